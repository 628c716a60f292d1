// Device helpers shared by the CUDA kernels: error checks, typed 16-byte row
// loads, top-k candidate lists and warp/block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "svp/common.h"
#include "svp/cuda.h"

namespace svp {
namespace cuda {

[[noreturn]] void throw_cuda(cudaError_t err, const char* what, const char* file, int line);

// Every CUDA call is checked; a failure raises CudaError with CUDA's message.
#define SVP_CUDA(call)                                                     \
  do {                                                                     \
    cudaError_t svp_err_ = (call);                                         \
    if (svp_err_ != cudaSuccess) ::svp::cuda::throw_cuda(svp_err_, #call, __FILE__, __LINE__); \
  } while (0)

// The block's dynamic shared memory (`extern __shared__` in CUDA; under the
// CPU emulation, the buffer of the size the launch asked for, so that an
// access past it is caught: csrc/cuda_emu/include/svp_emu/device.h).
#ifdef SVP_CUDA_EMULATION
#define SVP_DYNAMIC_SHARED(type, name) SVP_EMU_DYNAMIC_SHARED(type, name)
#else
#define SVP_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

// Sets the device for the scope of a call and restores the caller's.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();

 private:
  int previous_ = -1;
};

// Carves one caller-provided buffer into aligned arrays.
class Arena {
 public:
  Arena(void* base, int64_t bytes) : base_(static_cast<char*>(base)), cap_(bytes) {}
  template <typename T>
  T* take(int64_t count) {
    used_ = (used_ + 255) & ~int64_t(255);
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += count * static_cast<int64_t>(sizeof(T));
    if (base_ && used_ > cap_)
      throw CudaError(format("svp_fast internal error: workspace of %lld bytes is too small",
                             (long long)cap_));
    return p;
  }
  int64_t used() const { return used_ + 256; }

 private:
  char* base_;
  int64_t cap_;
  int64_t used_ = 0;
};

// ------------------------------------------------------------- elements --

template <typename T>
struct Elem;
template <>
struct Elem<float> {
  static constexpr DType dtype = DType::f32;
  static constexpr int per16 = 4;
  __device__ static float get(const char* p, int64_t j) { return reinterpret_cast<const float*>(p)[j]; }
  // the 4 values of one 16-byte chunk
  __device__ static void chunk(const uint4& v, float* out) {
    out[0] = __uint_as_float(v.x);
    out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z);
    out[3] = __uint_as_float(v.w);
  }
};
template <>
struct Elem<__half> {
  static constexpr DType dtype = DType::f16;
  static constexpr int per16 = 8;
  __device__ static float get(const char* p, int64_t j) {
    return __half2float(reinterpret_cast<const __half*>(p)[j]);
  }
  __device__ static void chunk(const uint4& v, float* out) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float2 f = __half22float2(h[k]);
      out[2 * k] = f.x;
      out[2 * k + 1] = f.y;
    }
  }
};
template <>
struct Elem<__nv_bfloat16> {
  static constexpr DType dtype = DType::bf16;
  static constexpr int per16 = 8;
  __device__ static float get(const char* p, int64_t j) {
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p)[j]);
  }
  __device__ static void chunk(const uint4& v, float* out) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      out[2 * k] = __uint_as_float(w[k] << 16);
      out[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
};
template <>
struct Elem<double> {
  static constexpr DType dtype = DType::f64;
  static constexpr int per16 = 2;
  __device__ static double get(const char* p, int64_t j) { return reinterpret_cast<const double*>(p)[j]; }
};

__device__ inline double elem_as_double(DType t, const char* row, int64_t j) {
  switch (t) {
    case DType::f32: return Elem<float>::get(row, j);
    case DType::f16: return Elem<__half>::get(row, j);
    case DType::bf16: return Elem<__nv_bfloat16>::get(row, j);
    default: return Elem<double>::get(row, j);
  }
}

// ----------------------------------------------------------- candidates --

// Best-first list of the 4 best (value, index) candidates; larger value first,
// ties to the lower index. Empty slots hold (-2, INT64_MAX).
struct Top4 {
  double v[4];
  long long i[4];
};

__host__ __device__ inline bool cand_better(double v1, long long i1, double v2, long long i2) {
  return v1 > v2 || (v1 == v2 && i1 < i2);
}

__device__ inline void top4_clear(Top4& t) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    t.v[k] = -2.0;
    t.i[k] = 0x7fffffffffffffffLL;
  }
}

__device__ inline void top4_push(Top4& t, double v, long long i) {
  if (!cand_better(v, i, t.v[3], t.i[3])) return;
  // insertion with compile-time indices only (keeps the list in registers)
#pragma unroll
  for (int k = 3; k >= 1; --k) {
    const bool shift = cand_better(v, i, t.v[k - 1], t.i[k - 1]);
    const bool place = !shift && cand_better(v, i, t.v[k], t.i[k]);
    const double nv = shift ? t.v[k - 1] : (place ? v : t.v[k]);
    const long long ni = shift ? t.i[k - 1] : (place ? i : t.i[k]);
    t.v[k] = nv;
    t.i[k] = ni;
  }
  if (cand_better(v, i, t.v[0], t.i[0])) {
    t.v[0] = v;
    t.i[0] = i;
  }
}

__device__ inline void top4_merge(Top4& a, const Top4& b) {
#pragma unroll
  for (int k = 0; k < 4; ++k) top4_push(a, b.v[k], b.i[k]);
}

__device__ inline void top4_warp_reduce(Top4& t) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    Top4 o;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      o.v[k] = __shfl_xor_sync(0xffffffffu, t.v[k], off);
      o.i[k] = __shfl_xor_sync(0xffffffffu, t.i[k], off);
    }
    top4_merge(t, o);
  }
}

// A thread's two best candidates (the hot loop keeps only these).
struct Top2 {
  double v1, v2;
  long long i1, i2;
};

__device__ inline void top2_clear(Top2& t) {
  t.v1 = t.v2 = -2.0;
  t.i1 = t.i2 = 0x7fffffffffffffffLL;
}

__device__ inline void top2_push(Top2& t, double v, long long i) {
  if (cand_better(v, i, t.v1, t.i1)) {
    t.v2 = t.v1;
    t.i2 = t.i1;
    t.v1 = v;
    t.i1 = i;
  } else if (cand_better(v, i, t.v2, t.i2)) {
    t.v2 = v;
    t.i2 = i;
  }
}

// Block-wide: every thread passes its list; thread 0 gets the block's.
// scratch: shared array of blockDim/32 Top4.
__device__ inline Top4 top4_block_reduce(Top4 t, Top4* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  top4_warp_reduce(t);
  if (lane == 0) scratch[warp] = t;
  __syncthreads();
  if (warp == 0) {
    Top4 w;
    if (lane < nwarps) {
      w = scratch[lane];
    } else {
      top4_clear(w);
    }
    top4_warp_reduce(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  Top4 r = scratch[0];
  __syncthreads();
  return r;
}

template <typename V>
__device__ inline V warp_sum(V v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

}  // namespace cuda
}  // namespace svp
