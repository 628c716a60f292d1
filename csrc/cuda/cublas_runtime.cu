// cuBLAS loaded at run time (see cublas_runtime.h).
#include "cublas_runtime.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "common.cuh"

namespace svp {
namespace cuda {

namespace {

std::mutex& loader_mutex() {
  static std::mutex m;
  return m;
}

std::string& configured_path() {
  static std::string p;
  return p;
}

// cuBLAS's enums, as in cublas_api.h (stable across CUDA 12 and 13)
constexpr int kOpN = 0, kOpT = 1;
constexpr int kCompute32F = 68, kCompute32FPedantic = 69;
constexpr int kGemmDefault = -1;
constexpr int kDefaultMath = 0, kDisallowReducedPrecisionReduction = 16;

}  // namespace

Cublas& Cublas::get() {
  static Cublas instance;
  return instance;
}

void Cublas::set_library_path(const std::string& path) {
  std::lock_guard<std::mutex> lock(loader_mutex());
  configured_path() = path;
  Cublas& c = get();
  if (c.tried_ && !c.ok_) c.tried_ = false;  // a new place to look: try again
}

bool Cublas::available() {
  std::lock_guard<std::mutex> lock(loader_mutex());
  if (!tried_) load();
  return ok_;
}

const std::string& Cublas::why_not() {
  available();
  return why_;
}

void Cublas::load() {
  tried_ = true;
  std::string candidates[5];
  int n = 0;
  if (!configured_path().empty()) candidates[n++] = configured_path();
  if (const char* env = std::getenv("SVP_FAST_CUBLAS")) candidates[n++] = env;
  candidates[n++] = "libcublas.so.13";
  candidates[n++] = "libcublas.so.12";
  candidates[n++] = "libcublas.so";
  std::string tried;
  for (int i = 0; i < n && !lib_; ++i) {
    lib_ = dlopen(candidates[i].c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib_) tried += (tried.empty() ? "" : "; ") + candidates[i] + ": " + dlerror();
  }
  if (!lib_) {
    why_ = "cuBLAS not found (" + tried + ")";
    return;
  }
  create_ = reinterpret_cast<decltype(create_)>(dlsym(lib_, "cublasCreate_v2"));
  set_stream_ = reinterpret_cast<decltype(set_stream_)>(dlsym(lib_, "cublasSetStream_v2"));
  set_math_mode_ = reinterpret_cast<decltype(set_math_mode_)>(dlsym(lib_, "cublasSetMathMode"));
  gemm_ex_ = reinterpret_cast<decltype(gemm_ex_)>(dlsym(lib_, "cublasGemmEx"));
  if (!create_ || !set_stream_ || !set_math_mode_ || !gemm_ex_) {
    why_ = "the cuBLAS library found lacks cublasCreate_v2, cublasSetStream_v2, "
           "cublasSetMathMode or cublasGemmEx";
    return;
  }
  ok_ = true;
}

void* Cublas::handle_for_current_device() {
  int device = 0;
  SVP_CUDA(cudaGetDevice(&device));
  if (device < 0 || device >= 64) throw CudaError("svp_fast: cuBLAS handles are kept for devices 0-63");
  std::lock_guard<std::mutex> lock(loader_mutex());
  if (!handles_[device]) {
    void* h = nullptr;
    const int st = create_(&h);
    if (st != 0) throw CudaError(format("cublasCreate failed with status %d", st));
    // no reduced-precision arithmetic anywhere: the screening bound assumes
    // products exact (fp16, bf16) or rounded once (fp32) and fp32 sums
    set_math_mode_(h, kDefaultMath | kDisallowReducedPrecisionReduction);
    handles_[device] = h;
  }
  return handles_[device];
}

void Cublas::gemm_tn(cudaStream_t stream, int m, int n, int k, const void* A, int lda,
                     const void* B, int ldb, cudaDataType_t ab, float* C, int ldc) {
  if (!available()) throw CudaError("svp_fast: " + why_);
  void* h = handle_for_current_device();
  int st = set_stream_(h, stream);
  if (st != 0) throw CudaError(format("cublasSetStream failed with status %d", st));
  const float one = 1.0f, zero = 0.0f;
  // fp32 inputs: the pedantic compute type, so that no TF32 (10-bit products)
  // is used even where NVIDIA_TF32_OVERRIDE or a math mode would allow it
  const int compute = ab == CUDA_R_32F ? kCompute32FPedantic : kCompute32F;
  st = gemm_ex_(h, kOpT, kOpN, m, n, k, &one, A, ab, lda, B, ab, ldb, &zero, C, CUDA_R_32F, ldc,
                compute, kGemmDefault);
  if (st != 0) throw CudaError(format("cublasGemmEx failed with status %d (m=%d n=%d k=%d)", st, m, n, k));
}

}  // namespace cuda
}  // namespace svp

namespace svp {
namespace cuda {

bool set_cublas_library(const std::string& path, std::string* why_not) {
  if (!path.empty()) Cublas::set_library_path(path);
  Cublas& c = Cublas::get();
  const bool ok = c.available();
  if (why_not) *why_not = ok ? std::string() : c.why_not();
  return ok;
}

}  // namespace cuda
}  // namespace svp
