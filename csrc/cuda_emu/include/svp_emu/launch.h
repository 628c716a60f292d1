// Kernel launches under the CPU emulation: the typed entry that
// csrc/cuda/launch.cuh calls where nvcc would compile <<<...>>>.
//
// A launch needs what a real driver gets from the fat binary: the kernel's
// code (here: the C++ function itself, called once per emulated thread with a
// copy of the arguments, as every CUDA thread reads the same parameters) and
// its resources (registers per thread and static shared memory, for the
// occupancy model and the launch rules; read from the real nvcc build's
// resource usage at build time, csrc/cuda_emu/tools/kernel_resources.py).
// The kernel is a template argument, so its name comes from the compiler
// (__PRETTY_FUNCTION__) and matches the names in nvcc's resource report.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace svp_emu {

// What the emulator knows of one kernel (one per kernel for the process).
struct KernelInfo {
  const void* address = nullptr;
  const char* name = nullptr;  // e.g. "kc_steps<float, float, 1, true>" (no namespaces)
  int registers = 0;            // per thread, from nvcc's resource usage
  int static_smem = 0;          // bytes of __shared__ variables
  int local_bytes = 0;          // stack frame per thread
  bool resources_known = false;
  int max_dynamic_smem = 0;     // cudaFuncAttributeMaxDynamicSharedMemorySize (default 48 KB - static)
};

// The kernel body, type-erased: runs the kernel once for the calling
// emulated thread.
struct KernelBody {
  virtual ~KernelBody() = default;
  virtual void run() const = 0;
};

// Registers (once) and returns the kernel with this address;
// `pretty` is __PRETTY_FUNCTION__ of kernel_pretty<Kernel>().
KernelInfo& kernel_info(const void* address, const char* pretty);

// Validates the configuration as the driver does (cudaErrorInvalidConfiguration,
// cudaErrorInvalidValue for shared memory past the kernel's limit,
// cudaErrorLaunchOutOfResources for registers, cudaErrorCooperativeLaunchTooLarge),
// records the error as cudaGetLastError's, and enqueues the grid on the stream.
cudaError_t launch(KernelInfo& kernel, dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t stream,
                   bool cooperative, std::unique_ptr<KernelBody> body);

template <auto Kernel>
const char* kernel_pretty() {
  return __PRETTY_FUNCTION__;
}

template <auto Kernel>
struct KernelTraits;

template <typename... P, void (*Kernel)(P...)>
struct KernelTraits<Kernel> {
  static KernelInfo& info() {
    static KernelInfo& i = kernel_info(reinterpret_cast<const void*>(Kernel), kernel_pretty<Kernel>());
    return i;
  }

  struct Body final : KernelBody {
    std::tuple<std::decay_t<P>...> args;
    template <typename... A>
    explicit Body(A&&... a) : args(std::forward<A>(a)...) {}
    // each emulated thread gets its own copy of every parameter
    void run() const override {
      std::apply([](const std::decay_t<P>&... a) { Kernel(a...); }, args);
    }
  };

  template <typename... A>
  static cudaError_t launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool cooperative,
                            A&&... args) {
    static_assert(sizeof...(A) == sizeof...(P), "a kernel launch passes one argument per parameter");
    return svp_emu::launch(info(), grid, block, smem, stream, cooperative,
                           std::make_unique<Body>(std::forward<A>(args)...));
  }
};

}  // namespace svp_emu
