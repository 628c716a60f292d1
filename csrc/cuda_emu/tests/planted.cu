// Kernels with planted mistakes, and their correct twins, for the emulator's
// own tests (python_tests/test_cuda_emulator.py through svp_fast._emu_selftest).
// Each case launches one small kernel and returns what a device would: the
// CUDA error of the launch or of the synchronisation after it, with the
// emulator's report, and the kernel's output.
//
// This file is CUDA: it is compiled by nvcc as well (for its resource usage,
// which the emulator's launch rules read: the 9 KB of static shared memory of
// `static_plus_dynamic` count there).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <string>
#include <vector>

#ifdef SVP_CUDA_EMULATION
#include "svp_emu/launch.h"
#endif

namespace svp_emu_selftest {

namespace cg = cooperative_groups;

constexpr int kBlock = 128;

// ------------------------------------------------------------- kernels --

// A block sum written the usual way: warp sums by shuffles, one value per
// warp through shared memory, then the first warp sums those (HIP-CPU gets
// this one wrong: its shuffles wait for the whole block).
template <bool kBarrier>
__global__ void block_sum(const double* in, double* out) {
  __shared__ double warp_sums[kBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double v = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (lane == 0) warp_sums[warp] = v;
  if (kBarrier) __syncthreads();  // the planted mistake: without it, warp 0 may read too early
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? warp_sums[lane] : 0.0;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// Half the warp shuffles with a full mask: the other half never arrives.
__global__ void half_warp_shuffle(double* out) {
  double v = threadIdx.x;
  if ((threadIdx.x & 31) < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

// Every lane shuffles with a mask that names only the lower half.
__global__ void mask_without_caller(double* out) {
  double v = threadIdx.x;
  v = __shfl_xor_sync(0x0000ffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void write_through_null(double* out) { out[threadIdx.x] = 1.0; }

// Reads one element past the end of its input (only AddressSanitizer sees it).
__global__ void read_past_the_end(const double* in, double* out, int n) {
  out[threadIdx.x] = in[threadIdx.x + (threadIdx.x == 0 ? n : 0)];
}

// 9 KB of static shared memory, and dynamic shared memory on top.
__global__ void static_plus_dynamic(double* out) {
  __shared__ double fixed[9 * 1024 / 8];
#ifdef SVP_CUDA_EMULATION
  double* dyn = reinterpret_cast<double*>(::svp_emu::dynamic_shared_memory());
#else
  extern __shared__ double dyn[];
#endif
  fixed[threadIdx.x] = threadIdx.x;
  dyn[threadIdx.x] = 2.0 * threadIdx.x;
  __syncthreads();
  out[threadIdx.x] = fixed[threadIdx.x] + dyn[threadIdx.x];
}

__global__ void past_dynamic_smem(double* out, int n) {
#ifdef SVP_CUDA_EMULATION
  double* dyn = reinterpret_cast<double*>(::svp_emu::dynamic_shared_memory());
#else
  extern __shared__ double dyn[];
#endif
  if (threadIdx.x == 0) dyn[n] = 1.0;  // one past the end
  out[threadIdx.x] = 0.0;
}

// A grid-wide sum: every block adds its part, grid.sync(), block 0 reads the total.
__global__ void grid_sum(const double* in, double* partial, double* out) {
  cg::grid_group grid = cg::this_grid();
  __shared__ double s[kBlock / 32];
  double v = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double b = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) b += s[w];
    partial[blockIdx.x] = b;
  }
  grid.sync();
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    double t = 0;
    for (unsigned b = 0; b < gridDim.x; ++b) t += partial[b];
    out[0] = t;
  }
}

// grid.sync() reached by every block but the first.
__global__ void grid_sync_some_blocks(double* out) {
  if (blockIdx.x > 0) cg::this_grid().sync();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1.0;
}

// __syncthreads in a branch taken by some threads only.
__global__ void divergent_syncthreads(double* out) {
  if (threadIdx.x < 64) __syncthreads();
  out[threadIdx.x] = 1.0;
}

// the two halves of the block at two different barriers
__global__ void two_barrier_sites(double* out) {
  if (threadIdx.x < 64) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0;
}

// A spin loop on a flag that nobody sets.
__global__ void spin_forever(const volatile int* flag, double* out) {
  while (*flag == 0) __nanosleep(100);
  out[0] = 1.0;
}

// A spin loop without anything the emulator can switch at.
__global__ void spin_without_yield(const volatile int* flag, double* out) {
  while (*flag == 0) {
  }
  out[0] = 1.0;
}

// Slots handed out by an atomic counter: which thread gets which slot
// depends on the order threads run in (and so on the emulator's seed).
__global__ void slots_by_atomic(int* counter, double* out) {
  const int slot = atomicAdd(counter, 1);
  out[slot] = blockIdx.x * blockDim.x + threadIdx.x;
}

// Every thread writes its block's index: grids with many resident blocks,
// launched back to back between copies (the stream's thread leaves each grid
// while slot threads still count themselves out).
__global__ void block_index(double* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = blockIdx.x; }

// ---------------------------------------------------------------- host --

struct Outcome {
  std::string error = "cudaSuccess";  // cudaGetErrorName of the first error
  std::string message;                // cudaGetErrorString of it (with the emulator's report)
  std::vector<double> values;         // the kernel's output
};

namespace {

template <auto Kernel, typename... A>
cudaError_t launch(dim3 grid, dim3 block, size_t smem, bool cooperative, A&&... args) {
#ifdef SVP_CUDA_EMULATION
  return ::svp_emu::KernelTraits<Kernel>::launch(grid, block, smem, nullptr, cooperative,
                                                 std::forward<A>(args)...);
#else
  (void)cooperative;
  Kernel<<<grid, block, smem>>>(std::forward<A>(args)...);
  return cudaGetLastError();
#endif
}

template <auto Kernel>
const void* address() {
#ifdef SVP_CUDA_EMULATION
  return ::svp_emu::KernelTraits<Kernel>::info().address;
#else
  return reinterpret_cast<const void*>(Kernel);
#endif
}

struct Buffer {
  double* p = nullptr;
  size_t n = 0;
  explicit Buffer(size_t count, double fill = 0.0) : n(count) {
    cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(double));
    std::vector<double> h(n, fill);
    cudaMemcpy(p, h.data(), n * sizeof(double), cudaMemcpyHostToDevice);
  }
  ~Buffer() { cudaFree(p); }
  std::vector<double> read() const {
    std::vector<double> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(double), cudaMemcpyDeviceToHost);
    return h;
  }
};

// the first error of the launch or of the synchronisation after it
void finish(Outcome& o, cudaError_t launch_error, const Buffer* out) {
  cudaError_t e = launch_error;
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    o.error = cudaGetErrorName(e);
    o.message = cudaGetErrorString(e);
    cudaGetLastError();
    return;
  }
  if (out) o.values = out->read();
}

std::vector<double> iota_input(int blocks) {
  std::vector<double> h(static_cast<size_t>(blocks) * kBlock);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<double>(i % 1000) + 0.25 * static_cast<double>(i / kBlock);
  return h;
}

}  // namespace

Outcome run_case(const std::string& name) {
  Outcome o;
  if (name == "block_sum" || name == "missing_syncthreads") {
    const int blocks = 6;
    const std::vector<double> h = iota_input(blocks);
    Buffer in(h.size()), out(blocks);
    cudaMemcpy(in.p, h.data(), h.size() * sizeof(double), cudaMemcpyHostToDevice);
    if (name == "block_sum")
      finish(o, launch<block_sum<true>>(blocks, kBlock, 0, false, in.p, out.p), &out);
    else
      finish(o, launch<block_sum<false>>(blocks, kBlock, 0, false, in.p, out.p), &out);
  } else if (name == "half_warp_shuffle") {
    Buffer out(kBlock);
    finish(o, launch<half_warp_shuffle>(1, kBlock, 0, false, out.p), &out);
  } else if (name == "mask_without_caller") {
    Buffer out(kBlock);
    finish(o, launch<mask_without_caller>(1, kBlock, 0, false, out.p), &out);
  } else if (name == "write_through_null") {
    Buffer out(kBlock);
    finish(o, launch<write_through_null>(1, kBlock, 0, false, static_cast<double*>(nullptr)), &out);
  } else if (name == "read_past_the_end") {
    Buffer in(kBlock), out(kBlock);
    finish(o, launch<read_past_the_end>(1, kBlock, 0, false, in.p, out.p, kBlock), &out);
  } else if (name == "static_plus_dynamic" || name == "static_plus_dynamic_with_attribute") {
    Buffer out(kBlock);
    const size_t dyn = 40 * 1024;
    if (name == "static_plus_dynamic_with_attribute") {
      const cudaError_t e = cudaFuncSetAttribute(address<static_plus_dynamic>(),
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dyn));
      if (e != cudaSuccess) return finish(o, e, nullptr), o;
    }
    finish(o, launch<static_plus_dynamic>(1, kBlock, dyn, false, out.p), &out);
  } else if (name == "past_dynamic_smem") {
    Buffer out(kBlock);
    finish(o, launch<past_dynamic_smem>(1, kBlock, 64 * sizeof(double), false, out.p, 64), &out);
  } else if (name == "cooperative_fits" || name == "cooperative_too_large") {
    int per_sm = 0, sms = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, address<grid_sum>(), kBlock, 0);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    const int blocks = per_sm * sms + (name == "cooperative_too_large" ? 1 : 0);
    const std::vector<double> h = iota_input(blocks);
    Buffer in(h.size()), partial(blocks), out(1);
    cudaMemcpy(in.p, h.data(), h.size() * sizeof(double), cudaMemcpyHostToDevice);
    finish(o, launch<grid_sum>(blocks, kBlock, 0, true, in.p, partial.p, out.p), &out);
    if (o.error == "cudaSuccess") o.values.push_back(static_cast<double>(blocks));
  } else if (name == "grid_sync_some_blocks") {
    Buffer out(4 * kBlock);
    finish(o, launch<grid_sync_some_blocks>(4, kBlock, 0, true, out.p), &out);
  } else if (name == "grid_sync_not_cooperative") {
    const std::vector<double> h = iota_input(2);
    Buffer in(h.size()), partial(2), out(1);
    finish(o, launch<grid_sum>(2, kBlock, 0, false, in.p, partial.p, out.p), &out);
  } else if (name == "divergent_syncthreads") {
    Buffer out(kBlock);
    finish(o, launch<divergent_syncthreads>(1, kBlock, 0, false, out.p), &out);
  } else if (name == "two_barrier_sites") {
    Buffer out(kBlock);
    finish(o, launch<two_barrier_sites>(1, kBlock, 0, false, out.p), &out);
  } else if (name == "spin_forever") {
    int* flag = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&flag), sizeof(int));
    cudaMemset(flag, 0, sizeof(int));
    Buffer out(1);
    finish(o, launch<spin_forever>(1, 32, 0, false, flag, out.p), &out);
    cudaFree(flag);
  } else if (name == "spin_without_yield") {
    int* flag = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&flag), sizeof(int));
    cudaMemset(flag, 0, sizeof(int));
    Buffer out(1);
    finish(o, launch<spin_without_yield>(1, 32, 0, false, flag, out.p), &out);
    cudaFree(flag);
  } else if (name == "slots_by_atomic") {
    int* counter = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&counter), sizeof(int));
    cudaMemset(counter, 0, sizeof(int));
    Buffer out(4 * kBlock);
    finish(o, launch<slots_by_atomic>(4, kBlock, 0, false, counter, out.p), &out);
    cudaFree(counter);
  } else if (name == "launches_then_copies") {
    // values: per launch, the sum of what its grid wrote (copied back at once)
    const int blocks = 16, threads = 32, launches = 50;
    Buffer out(static_cast<size_t>(blocks) * threads);
    std::vector<double> h(out.n);
    for (int i = 0; i < launches && o.error == "cudaSuccess"; ++i) {
      cudaMemset(out.p, 0, out.n * sizeof(double));
      cudaError_t e = launch<block_index>(blocks, threads, 0, false, out.p);
      if (e == cudaSuccess) e = cudaMemcpy(h.data(), out.p, out.n * sizeof(double), cudaMemcpyDeviceToHost);
      if (e != cudaSuccess) return finish(o, e, nullptr), o;
      double sum = 0;
      for (double v : h) sum += v;
      o.values.push_back(sum);
    }
  } else if (name == "cub_temp_too_small" || name == "cub_temp_enough") {
    const int n = 1000;
    float *keys = nullptr, *keys_out = nullptr;
    int *vals = nullptr, *vals_out = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&keys), n * sizeof(float));
    cudaMalloc(reinterpret_cast<void**>(&keys_out), n * sizeof(float));
    cudaMalloc(reinterpret_cast<void**>(&vals), n * sizeof(int));
    cudaMalloc(reinterpret_cast<void**>(&vals_out), n * sizeof(int));
    std::vector<float> hk(n);
    std::vector<int> hv(n);
    for (int i = 0; i < n; ++i) {
      hk[i] = static_cast<float>((i * 37) % 101);
      hv[i] = i;
    }
    cudaMemcpy(keys, hk.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(vals, hv.data(), n * sizeof(int), cudaMemcpyHostToDevice);
    size_t need = 0;
    cub::DeviceRadixSort::SortPairsDescending(nullptr, need, keys, keys_out, vals, vals_out, n);
    size_t give = name == "cub_temp_too_small" ? need - 1 : need;
    void* temp = nullptr;
    cudaMalloc(&temp, give);
    const cudaError_t e = cub::DeviceRadixSort::SortPairsDescending(temp, give, keys, keys_out, vals, vals_out, n);
    finish(o, e, nullptr);
    if (o.error == "cudaSuccess") {
      std::vector<float> sk(n);
      cudaMemcpy(sk.data(), keys_out, n * sizeof(float), cudaMemcpyDeviceToHost);
      o.values.assign(sk.begin(), sk.end());
    }
    cudaFree(temp);
    cudaFree(keys);
    cudaFree(keys_out);
    cudaFree(vals);
    cudaFree(vals_out);
  } else {
    o.error = "unknown case";
    o.message = "no planted case named " + name;
  }
  return o;
}

std::vector<std::string> case_names() {
  return {"block_sum",
          "missing_syncthreads",
          "half_warp_shuffle",
          "mask_without_caller",
          "write_through_null",
          "read_past_the_end",
          "static_plus_dynamic",
          "static_plus_dynamic_with_attribute",
          "past_dynamic_smem",
          "cooperative_fits",
          "cooperative_too_large",
          "grid_sync_some_blocks",
          "grid_sync_not_cooperative",
          "divergent_syncthreads",
          "two_barrier_sites",
          "spin_forever",
          "spin_without_yield",
          "slots_by_atomic",
          "launches_then_copies",
          "cub_temp_too_small",
          "cub_temp_enough"};
}

}  // namespace svp_emu_selftest
