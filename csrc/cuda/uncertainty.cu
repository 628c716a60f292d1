// CUDA uncertainty: one warp per row computes the score in one pass over the
// row (a second sweep over the same row hits L1), never storing softmax; then
// a stable radix sort of (score, index) orders the rows, so equal scores keep
// ascending indices: ties go to the lowest index, as on the CPU.
#include <cub/device/device_radix_sort.cuh>

#include <cmath>
#include <cstring>
#include <limits>

#include "common.cuh"

namespace svp {
namespace cuda {

namespace {

template <typename T>
struct Acc_of {
  using type = float;
};
template <>
struct Acc_of<double> {
  using type = double;
};

__device__ inline float dexp(float x) { return expf(x); }
__device__ inline double dexp(double x) { return exp(x); }
__device__ inline float dlog(float x) { return logf(x); }
__device__ inline double dlog(double x) { return log(x); }

// bad[0]: first non-finite linear index; bad[1]: first row that is not a
// probability distribution (inputs = probs).
template <typename T>
__global__ void unc_scores(const char* X, long long N, long long C, long long row_bytes,
                           UncertaintyMethod method, ScoreInput input, int check_finite,
                           double tol, typename Acc_of<T>::type* scores,
                           unsigned long long* bad) {
  using A = typename Acc_of<T>::type;
  const int lane = threadIdx.x & 31;
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  const A ninf = -INFINITY;
  for (long long r = warp; r < N; r += nwarps) {
    const char* row = X + r * row_bytes;
    // sweep 1: the two largest, min and sum, finiteness
    A m1 = ninf, m2 = ninf, lo = INFINITY, sum = 0;
    unsigned long long first_bad = ~0ull;
#pragma unroll 4
    for (long long j = lane; j < C; j += 32) {
      const A v = static_cast<A>(Elem<T>::get(row, j));
      if (check_finite && !isfinite(v)) {
        const unsigned long long lin = static_cast<unsigned long long>(r * C + j);
        first_bad = lin < first_bad ? lin : first_bad;
      }
      m2 = fmax(m2, fmin(m1, v));
      m1 = fmax(m1, v);
      lo = fmin(lo, v);
      sum += v;
    }
    for (int off = 16; off > 0; off >>= 1) {
      const A o1 = __shfl_xor_sync(0xffffffffu, m1, off);
      const A o2 = __shfl_xor_sync(0xffffffffu, m2, off);
      // top-2 of the union of two top-2 lists
      const A hi = fmax(m1, o1);
      m2 = fmax(fmin(m1, o1), fmax(m2, o2));
      m1 = hi;
      lo = fmin(lo, __shfl_xor_sync(0xffffffffu, lo, off));
      sum += __shfl_xor_sync(0xffffffffu, sum, off);
      const unsigned long long ob = __shfl_xor_sync(0xffffffffu, first_bad, off);
      first_bad = ob < first_bad ? ob : first_bad;
    }
    if (first_bad != ~0ull) {
      if (lane == 0) atomicMin(bad, first_bad);
      continue;
    }
    A score;
    if (input == ScoreInput::logits) {
      // sweep 2: S = sum exp(z - m1), Tn = sum exp(z - m1) (z - m1)
      A S = 0, Tn = 0;
#pragma unroll 4
      for (long long j = lane; j < C; j += 32) {
        const A d = static_cast<A>(Elem<T>::get(row, j)) - m1;
        const A e = dexp(d);
        S += e;
        Tn = fma(e, fmax(d, A(-1000)), Tn);  // 0 * (-inf) would be NaN
      }
      // the sums in the input's precision, the last few operations in float64
      // and rounded once, exactly as the CPU kernels do
      const double Sd = static_cast<double>(warp_sum(S));
      const double Td = static_cast<double>(warp_sum(Tn));
      const double p1 = 1.0 / Sd;
      const double p2 = C > 1 ? static_cast<double>(dexp(m2 - m1)) / Sd : 0.0;
      switch (method) {
        case UncertaintyMethod::least_confidence: score = static_cast<A>(1.0 - p1); break;
        case UncertaintyMethod::entropy: score = static_cast<A>(log(Sd) - Td / Sd); break;
        default: score = static_cast<A>(1.0 - (p1 - p2)); break;
      }
    } else {
      if (lo < -tol || fabs(static_cast<double>(sum) - 1.0) > tol) {
        if (lane == 0) atomicMin(bad + 1, static_cast<unsigned long long>(r));
        continue;
      }
      if (C == 1) m2 = 0;
      if (method == UncertaintyMethod::entropy) {
        A H = 0;
#pragma unroll 4
        for (long long j = lane; j < C; j += 32) {
          const A v = static_cast<A>(Elem<T>::get(row, j));
          if (v > A(0)) H -= v * dlog(v);
        }
        score = warp_sum(H);
      } else if (method == UncertaintyMethod::least_confidence) {
        score = static_cast<A>(1.0 - static_cast<double>(m1));
      } else {
        score = static_cast<A>(1.0 - (static_cast<double>(m1) - static_cast<double>(m2)));
      }
    }
    if (lane == 0) scores[r] = score + A(0);  // +0.0, never -0.0: one order for the sort
  }
}

// Sort keys: the scores with NaN (only from unchecked input) as -inf, so NaN
// ranks last as on the CPU (CUB would order NaN by its bits).
template <typename A>
__global__ void sort_keys(const A* scores, A* keys, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const A v = scores[i];
    keys[i] = isnan(v) ? A(-INFINITY) : v;
  }
}

__global__ void iota64(long long* out, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n; i += stride) out[i] = i;
}

template <typename A>
size_t sort_temp_bytes(long long n) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairsDescending<A, long long>(nullptr, bytes, static_cast<const A*>(nullptr),
                                                          static_cast<A*>(nullptr), static_cast<const long long*>(nullptr),
                                                          static_cast<long long*>(nullptr), n);
  return bytes;
}

struct ULayout {
  void* keys_in = nullptr;
  void* keys_out = nullptr;
  long long* idx_in = nullptr;
  long long* idx_out = nullptr;
  unsigned long long* bad = nullptr;
  void* temp = nullptr;
  size_t temp_bytes = 0;
  int64_t bytes = 0;
};

ULayout ulayout(void* base, int64_t cap, const DeviceMatrix& X, int64_t k) {
  ULayout L;
  Arena a(base, cap);
  const long long n = X.rows;
  L.bad = a.take<unsigned long long>(2);
  if (k >= 0) {
    const bool f64 = X.dtype == DType::f64;
    L.keys_in = a.take<double>(n);
    L.keys_out = a.take<double>(n);
    L.idx_in = a.take<long long>(n);
    L.idx_out = a.take<long long>(n);
    L.temp_bytes = f64 ? sort_temp_bytes<double>(n) : sort_temp_bytes<float>(n);
    L.temp = a.take<unsigned char>(static_cast<int64_t>(L.temp_bytes));
  }
  L.bytes = a.used();
  return L;
}

}  // namespace

int64_t uncertainty_cuda_workspace(const DeviceMatrix& X, int64_t k) {
  DeviceGuard guard(X.device);
  return ulayout(nullptr, 0, X, k).bytes;
}

void uncertainty_cuda(const DeviceMatrix& X, const UncertaintyCudaOptions& opt, void* workspace,
                      int64_t workspace_bytes, void* scores, int64_t k, int64_t* order,
                      void* top) {
  const char* name = opt.arg_name ? opt.arg_name : "x";
  const long long n = X.rows, C = X.cols;
  SVP_CHECK_ARG(n >= 1 && C >= 1, "%s must be a non-empty 2-D array, got shape (%lld, %lld)", name, n, C);
  SVP_CHECK_ARG(k <= n, "budget must be at most the number of rows (%lld), got %lld", n, (long long)k);
  DeviceGuard guard(X.device);
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(X.stream);
  ULayout L = ulayout(workspace, workspace_bytes, X, k);
  const unsigned long long init_bad[2] = {~0ull, ~0ull};
  SVP_CUDA(cudaMemcpyAsync(L.bad, init_bad, sizeof(init_bad), cudaMemcpyHostToDevice, stream));
  const long long row_bytes = X.row_stride * static_cast<long long>(dtype_size(X.dtype));
  const int grid = static_cast<int>(std::min<long long>(8192, (n + 7) / 8));
  const char* x = static_cast<const char*>(X.data);
  const int cf = opt.check_finite ? 1 : 0;
  switch (X.dtype) {
    case DType::f32:
      unc_scores<float><<<grid, 256, 0, stream>>>(x, n, C, row_bytes, opt.method, opt.input, cf,
                                                  opt.probs_tolerance, static_cast<float*>(scores), L.bad);
      break;
    case DType::f16:
      unc_scores<__half><<<grid, 256, 0, stream>>>(x, n, C, row_bytes, opt.method, opt.input, cf,
                                                   opt.probs_tolerance, static_cast<float*>(scores), L.bad);
      break;
    case DType::bf16:
      unc_scores<__nv_bfloat16><<<grid, 256, 0, stream>>>(x, n, C, row_bytes, opt.method, opt.input, cf,
                                                          opt.probs_tolerance, static_cast<float*>(scores), L.bad);
      break;
    case DType::f64:
      unc_scores<double><<<grid, 256, 0, stream>>>(x, n, C, row_bytes, opt.method, opt.input, cf,
                                                   opt.probs_tolerance, static_cast<double*>(scores), L.bad);
      break;
  }
  SVP_CUDA_LAUNCH_CHECK("unc_scores");
  unsigned long long bad[2];
  SVP_CUDA(cudaMemcpyAsync(bad, L.bad, sizeof(bad), cudaMemcpyDeviceToHost, stream));
  SVP_CUDA(cudaStreamSynchronize(stream));
  if (bad[0] != ~0ull) {
    const long long r = static_cast<long long>(bad[0] / static_cast<unsigned long long>(C));
    const long long c = static_cast<long long>(bad[0] % static_cast<unsigned long long>(C));
    throw ValueError(format("%s must be finite, got a NaN or infinity at row %lld, column %lld", name, r, c));
  }
  if (bad[1] != ~0ull)
    throw ValueError(format(
        "%s row %lld is not a probability distribution (entries must be >= 0 and sum to 1 "
        "within %g); pass inputs='logits' if these are logits",
        name, static_cast<long long>(bad[1]), opt.probs_tolerance));
  if (k <= 0) return;
  iota64<<<1024, 256, 0, stream>>>(L.idx_in, n);
  SVP_CUDA_LAUNCH_CHECK("iota64");
  size_t tb = L.temp_bytes;
  if (X.dtype == DType::f64) {
    sort_keys<double><<<1024, 256, 0, stream>>>(static_cast<const double*>(scores),
                                                static_cast<double*>(L.keys_in), n);
    SVP_CUDA_LAUNCH_CHECK("sort_keys");
    SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(L.temp, tb, static_cast<const double*>(L.keys_in),
                                                       static_cast<double*>(L.keys_out), L.idx_in,
                                                       L.idx_out, n, 0, 64, stream));
  } else {
    sort_keys<float><<<1024, 256, 0, stream>>>(static_cast<const float*>(scores),
                                               static_cast<float*>(L.keys_in), n);
    SVP_CUDA_LAUNCH_CHECK("sort_keys");
    SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(L.temp, tb, static_cast<const float*>(L.keys_in),
                                                       static_cast<float*>(L.keys_out), L.idx_in,
                                                       L.idx_out, n, 0, 32, stream));
  }
  const size_t es = X.dtype == DType::f64 ? 8 : 4;
  SVP_CUDA(cudaMemcpyAsync(order, L.idx_out, sizeof(long long) * k, cudaMemcpyDeviceToDevice, stream));
  if (top) SVP_CUDA(cudaMemcpyAsync(top, L.keys_out, es * k, cudaMemcpyDeviceToDevice, stream));
}

}  // namespace cuda
}  // namespace svp
