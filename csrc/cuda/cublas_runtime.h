// cuBLAS, loaded at run time (dlopen) for the batched k-center's pass product.
//
// The build needs neither cuBLAS headers nor its library (none are on the
// build machine; torch's CUDA build brings libcublas to a GPU machine), and a
// process without cuBLAS runs every other path: the batched engine then uses
// its own fused kernel. Only the few entry points used are declared here, with
// cuBLAS's stable C ABI (cublas_api.h, CUDA 12 and 13).
#pragma once

#include <cuda_runtime.h>
#include <library_types.h>

#include <string>

namespace svp {
namespace cuda {

class Cublas {
 public:
  // The process-wide loader; the library is found, in order: the path given
  // to set_library_path (svp_fast passes the one torch loaded), the
  // SVP_FAST_CUBLAS environment variable, then libcublas.so.13, .so.12, .so.
  static Cublas& get();
  static void set_library_path(const std::string& path);

  bool available();          // loads on first use
  const std::string& why_not();  // the reason when not available

  // C (m x n, column-major, float32) = A^T B with A (k x m) and B (k x n)
  // column-major of type `ab` (CUDA_R_16F, CUDA_R_16BF or CUDA_R_32F),
  // float32 accumulation (no TF32), on `stream`, on the current device.
  void gemm_tn(cudaStream_t stream, int m, int n, int k, const void* A, int lda, const void* B,
               int ldb, cudaDataType_t ab, float* C, int ldc);

 private:
  Cublas() = default;
  void load();
  void* handle_for_current_device();

  bool tried_ = false, ok_ = false;
  std::string why_;
  void* lib_ = nullptr;
  // entry points
  int (*create_)(void**) = nullptr;
  int (*set_stream_)(void*, cudaStream_t) = nullptr;
  int (*set_math_mode_)(void*, int) = nullptr;
  int (*gemm_ex_)(void*, int, int, int, int, int, const void*, const void*, cudaDataType_t, int,
                  const void*, cudaDataType_t, int, const void*, void*, cudaDataType_t, int, int,
                  int) = nullptr;
  void* handles_[64] = {};  // one handle per device, kept for the process
};

}  // namespace cuda
}  // namespace svp
