// Kernel launches of the CUDA twin. Every launch goes through launch<K>() or
// launch_cooperative<K>():
//   - typed: the arguments convert to the kernel's parameters as in a call
//     (a cooperative launch's `void* args[]` array can no longer disagree
//     with the parameter list);
//   - checked: the launch's own error (configuration, shared memory,
//     resources, a cooperative grid that cannot be resident) is raised at
//     once, with the kernel's name;
//   - the same source under nvcc and under the CPU emulation
//     (csrc/cuda_emu), whose launches need the kernel's type and name.
// The attribute and occupancy queries take the kernel the same way.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>

#include "common.cuh"

#ifdef SVP_CUDA_EMULATION
#include "svp_emu/launch.h"
#endif

namespace svp {
namespace cuda {

// "kc_steps<float, float, 1, true>": the kernel's name for messages.
template <auto Kernel>
const std::string& kernel_name() {
  static const std::string name = [] {
    const std::string s = __PRETTY_FUNCTION__;
    const std::string key = "Kernel = ";
    size_t a = s.find(key);
    a = a == std::string::npos ? 0 : a + key.size();
    size_t b = s.find_first_of(";]", a);
    std::string full = s.substr(a, b == std::string::npos ? std::string::npos : b - a);
    const std::string head = full.substr(0, full.find('<'));
    const size_t colon = head.rfind("::");
    return colon == std::string::npos ? full : full.substr(colon + 2);
  }();
  return name;
}

template <auto Kernel>
struct KernelLaunch;

template <typename... P, void (*Kernel)(P...)>
struct KernelLaunch<Kernel> {
  static const void* address() {
#ifdef SVP_CUDA_EMULATION
    return ::svp_emu::KernelTraits<Kernel>::info().address;  // registers it with the emulator
#else
    return reinterpret_cast<const void*>(Kernel);
#endif
  }

  template <typename... A>
  static void plain(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
    static_assert(sizeof...(A) == sizeof...(P), "a kernel launch passes one argument per parameter");
#ifdef SVP_CUDA_EMULATION
    const cudaError_t err =
        ::svp_emu::KernelTraits<Kernel>::launch(grid, block, smem, stream, false, std::forward<A>(args)...);
#else
    Kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
    const cudaError_t err = cudaGetLastError();
#endif
    if (err != cudaSuccess) throw_cuda(err, ("launch of " + kernel_name<Kernel>()).c_str(), __FILE__, __LINE__);
  }

  template <typename... A>
  static void cooperative(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
    static_assert(sizeof...(A) == sizeof...(P), "a kernel launch passes one argument per parameter");
#ifdef SVP_CUDA_EMULATION
    const cudaError_t err =
        ::svp_emu::KernelTraits<Kernel>::launch(grid, block, smem, stream, true, std::forward<A>(args)...);
#else
    // the parameters as the kernel takes them, and their addresses
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    cudaError_t err = std::apply(
        [&](auto&... p) {
          void* argv[] = {static_cast<void*>(&p)..., nullptr};
          return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(Kernel), grid, block, argv, smem,
                                             stream);
        },
        params);
    if (err == cudaSuccess) err = cudaGetLastError();
#endif
    if (err != cudaSuccess)
      throw_cuda(err, ("cooperative launch of " + kernel_name<Kernel>()).c_str(), __FILE__, __LINE__);
  }
};

// launch<Kernel>(grid, block, smem, stream, args...), checked.
template <auto Kernel, typename... A>
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
  KernelLaunch<Kernel>::plain(grid, block, smem, stream, std::forward<A>(args)...);
}

// cudaLaunchCooperativeKernel(Kernel, ...) with typed arguments, checked.
template <auto Kernel, typename... A>
void launch_cooperative(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
  KernelLaunch<Kernel>::cooperative(grid, block, smem, stream, std::forward<A>(args)...);
}

// cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
template <auto Kernel>
void set_max_dynamic_smem(int bytes) {
  const cudaError_t err = cudaFuncSetAttribute(KernelLaunch<Kernel>::address(),
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err != cudaSuccess)
    throw_cuda(err, ("cudaFuncSetAttribute(" + kernel_name<Kernel>() + ")").c_str(), __FILE__, __LINE__);
}

// The kernel's static shared memory (its __shared__ variables), bytes.
template <auto Kernel>
size_t static_shared_bytes() {
  cudaFuncAttributes attr;
  const cudaError_t err = cudaFuncGetAttributes(&attr, KernelLaunch<Kernel>::address());
  if (err != cudaSuccess)
    throw_cuda(err, ("cudaFuncGetAttributes(" + kernel_name<Kernel>() + ")").c_str(), __FILE__, __LINE__);
  return attr.sharedSizeBytes;
}

// Lets Kernel launch with `smem` bytes of dynamic shared memory: a launch may
// use 48 KB of static and dynamic shared memory together unless the kernel
// opted in to more (its static part counts: 48 KB of dynamic memory alone is
// already too much for a kernel with any __shared__ variable).
template <auto Kernel>
void allow_dynamic_smem(size_t smem) {
  if (smem + static_shared_bytes<Kernel>() > (48u << 10)) set_max_dynamic_smem<Kernel>(static_cast<int>(smem));
}

// cudaOccupancyMaxActiveBlocksPerMultiprocessor for Kernel
template <auto Kernel>
int max_active_blocks_per_sm(int threads, size_t smem) {
  int n = 0;
  const cudaError_t err =
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, KernelLaunch<Kernel>::address(), threads, smem);
  if (err != cudaSuccess)
    throw_cuda(err, ("cudaOccupancyMaxActiveBlocksPerMultiprocessor(" + kernel_name<Kernel>() + ")").c_str(),
               __FILE__, __LINE__);
  return n;
}

}  // namespace cuda
}  // namespace svp
