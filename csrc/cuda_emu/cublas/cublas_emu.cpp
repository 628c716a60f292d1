// A cuBLAS stand-in for the CPU emulation of CUDA: the four entry points the
// project loads at run time (csrc/cuda/cublas_runtime.cu, dlopen + dlsym),
// with cuBLAS's C ABI, status codes and argument checks, the GEMM computed on
// the host in stream order (cudaLaunchHostFunc on the handle's stream).
//
// Build it as a shared library exporting only those four symbols:
//   g++ -std=c++17 -O2 -fPIC -shared -fvisibility=hidden
//       -Wl,--version-script=csrc/cuda_emu/cublas/cublas_emu.map
//       -I csrc/cuda_emu/include -I /usr/local/cuda-13.0/include
//       csrc/cuda_emu/cublas/cublas_emu.cpp -o libcublas_emu.so
// (the version script hides the std:: template instantiations, which
// -fvisibility=hidden leaves exported).
// It calls cudaLaunchHostFunc and svp_emu_random_u64, which the process
// must provide (link it against the emulated runtime's shared library).
//
// The arithmetic contract (what a GPU may do, which the caller's error
// bounds must survive):
//   - products: exact for fp16/bf16 inputs (float32 holds them exactly);
//     float32 inputs multiply in a float32 FMA, unless reduced precision is
//     allowed, when they are first rounded as a GPU's tensor cores would
//     (TF32: 10 explicit mantissa bits; fp16 or bf16 for the FAST_16F/16BF
//     compute types and the deprecated TENSOR_OP math mode), after which the
//     products are again exact;
//   - sums: float32, in an order that is not the naive one: k is cut into
//     blocks of random lengths (seeded from svp_emu_random_u64 at the call),
//     each block summed on its own, the block sums then added pairwise, as
//     a split-k kernel would; cuBLAS promises no order.
#include <cuda_runtime.h>
#include <library_types.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <vector>

#include "svp_emu/hooks.h"

#define SVP_CUBLAS_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// ---------------------------------------------------------------- enums --
// cuBLAS's values (cublas_api.h, CUDA 12 and 13; not installed here).

enum Status : int {
  kStatusSuccess = 0,
  kStatusNotInitialized = 1,
  kStatusAllocFailed = 3,
  kStatusInvalidValue = 7,
  kStatusArchMismatch = 8,
  kStatusMappingError = 11,
  kStatusExecutionFailed = 13,
  kStatusInternalError = 14,
  kStatusNotSupported = 15,
};

enum Operation : int { kOpN = 0, kOpT = 1, kOpC = 2 };

// cublasMath_t: a base mode, optionally or-ed with the flag.
enum MathMode : int {
  kDefaultMath = 0,
  kTensorOpMath = 1,  // deprecated: fp32 GEMMs may run as 32F_FAST_16F
  kPedanticMath = 2,
  kTf32TensorOpMath = 3,
  kFp32EmulatedBf16x9Math = 4,  // CUDA 12.9+: fp32 accuracy (from bf16 pieces)
  kFp64EmulatedFixedpointMath = 8,  // CUDA 13: fp64 only
  kDisallowReducedPrecisionReduction = 16,
};

// cublasComputeType_t
enum ComputeType : int {
  kCompute16F = 64,
  kCompute16FPedantic = 65,
  kCompute32F = 68,
  kCompute32FPedantic = 69,
  kCompute64F = 70,
  kCompute64FPedantic = 71,
  kCompute32I = 72,
  kCompute32IPedantic = 73,
  kCompute32FFast16F = 74,
  kCompute32FFast16BF = 75,
  kCompute32FFastTF32 = 77,
  kCompute32FEmulated16BFX9 = 78,
  kCompute64FEmulatedFixedpoint = 79,
};

// cublasGemmAlgo_t: DEFAULT (-1), ALGO0..23, DEFAULT_TENSOR_OP (99),
// ALGO0_TENSOR_OP..ALGO15_TENSOR_OP (100..115); all only hints since CUDA 11.
bool known_gemm_algo(int algo) { return (algo >= -1 && algo <= 23) || (algo >= 99 && algo <= 115); }

bool known_compute_type(int c) {
  return (c >= kCompute16F && c <= kCompute32FFast16BF) || c == kCompute32FFastTF32 ||
         c == kCompute32FEmulated16BFX9 || c == kCompute64FEmulatedFixedpoint;
}

// ------------------------------------------------------------- handle --

constexpr uint64_t kHandleMagic = 0x5356504355424C41ull;  // "SVPCUBLA"

struct Handle {
  uint64_t magic = kHandleMagic;
  cudaStream_t stream = nullptr;  // the legacy default stream, as cuBLAS's
  int math_mode = kDefaultMath;
  // NVIDIA_TF32_OVERRIDE as read when the handle was made: -1 unset, 0 never
  // TF32, 1 TF32 for every fp32 GEMM whose compute type is not pedantic
  int tf32_override = -1;
};

Handle* valid_handle(void* h) {
  Handle* handle = static_cast<Handle*>(h);
  return handle && handle->magic == kHandleMagic ? handle : nullptr;
}

// Where cuBLAS supports a call that this stand-in does not, say so (the
// caller sees only NOT_SUPPORTED, which on a GPU would mean something else).
void not_implemented(const char* what) {
  std::fprintf(stderr, "svp_fast cuBLAS emulation: %s is not implemented (CUBLAS_STATUS_NOT_SUPPORTED)\n", what);
}

// ----------------------------------------------------- number formats --

// Rounds a float32 to TF32 (8-bit exponent, 10 explicit mantissa bits),
// to nearest with ties to even, as the conversion ahead of a TF32 tensor
// core product; infinities and NaNs pass unchanged.
float round_to_tf32(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7F800000u) == 0x7F800000u) return x;
  constexpr uint32_t kDropped = 13;  // 23 - 10 mantissa bits
  const uint32_t lsb = (bits >> kDropped) & 1u;
  bits += ((1u << (kDropped - 1)) - 1u) + lsb;  // may carry into the exponent: correct (up to inf)
  bits &= ~((1u << kDropped) - 1u);
  float y;
  std::memcpy(&y, &bits, sizeof(y));
  return y;
}

float round_to_fp16(float x) { return __half2float(__float2half_rn(x)); }
float round_to_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

enum class InputRounding { none, tf32, fp16, bf16 };

// Reads element `index` of a matrix of type `type` as float, then rounds it
// as the product's inputs are rounded.
float load_element(const void* base, cudaDataType_t type, size_t index, InputRounding rounding) {
  float value;
  switch (type) {
    case CUDA_R_16F:
      value = __half2float(static_cast<const __half*>(base)[index]);
      break;
    case CUDA_R_16BF:
      value = __bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]);
      break;
    default:  // CUDA_R_32F (the only other type accepted)
      value = static_cast<const float*>(base)[index];
      break;
  }
  switch (rounding) {
    case InputRounding::tf32:
      return round_to_tf32(value);
    case InputRounding::fp16:
      return round_to_fp16(value);
    case InputRounding::bf16:
      return round_to_bf16(value);
    case InputRounding::none:
    default:
      return value;
  }
}

// ------------------------------------------------------------- random --

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------- GEMM --

struct GemmWork {
  int transa, transb, m, n, k;
  float alpha, beta;
  const void* A;
  cudaDataType_t a_type;
  int lda;
  const void* B;
  cudaDataType_t b_type;
  int ldb;
  float* C;
  int ldc;
  InputRounding rounding;
  uint64_t order_seed;

  // op(A)(i, l) and op(B)(l, j) as stored, column-major (op C = op T for
  // real types)
  size_t a_index(int i, int l) const {
    return transa == kOpN ? size_t(i) + size_t(l) * size_t(lda) : size_t(l) + size_t(i) * size_t(lda);
  }
  size_t b_index(int l, int j) const {
    return transb == kOpN ? size_t(l) + size_t(j) * size_t(ldb) : size_t(j) + size_t(l) * size_t(ldb);
  }

  void run() const {
    // alpha == 0 or k == 0: C = beta C, A and B not read (BLAS semantics);
    // beta == 0: C is written, not read (NaNs there do not survive)
    const bool products = alpha != 0.0f && k > 0;
    if (!products) {
      for (int j = 0; j < n; ++j) {
        for (int i = 0; i < m; ++i) {
          float& c = C[size_t(i) + size_t(j) * size_t(ldc)];
          c = beta == 0.0f ? 0.0f : beta * c;
        }
      }
      return;
    }
    // the summation order: k cut into blocks of random lengths, each summed
    // forwards or (all of them) backwards, then the block sums pairwise
    SplitMix64 random(order_seed);
    std::vector<int> block_start;
    const int longest_block = 1 + static_cast<int>(random.next() % 64);
    for (int l = 0; l < k; l += 1 + static_cast<int>(random.next() % uint64_t(longest_block))) {
      block_start.push_back(l);
    }
    block_start.push_back(k);
    const bool backwards = (random.next() & 1) != 0;
    const size_t blocks = block_start.size() - 1;

    // op(B) converted once, column j contiguous; op(A) one row at a time
    std::vector<float> b_columns(static_cast<size_t>(n) * static_cast<size_t>(k));
    for (int j = 0; j < n; ++j) {
      for (int l = 0; l < k; ++l) b_columns[size_t(j) * size_t(k) + size_t(l)] = load_element(B, b_type, b_index(l, j), rounding);
    }
    std::vector<float> a_row(static_cast<size_t>(k)), block_sum(blocks);
    for (int i = 0; i < m; ++i) {
      for (int l = 0; l < k; ++l) a_row[size_t(l)] = load_element(A, a_type, a_index(i, l), rounding);
      for (int j = 0; j < n; ++j) {
        const float* b = &b_columns[size_t(j) * size_t(k)];
        for (size_t s = 0; s < blocks; ++s) {
          float sum = 0.0f;
          if (backwards) {
            for (int l = block_start[s + 1] - 1; l >= block_start[s]; --l) sum = std::fma(a_row[size_t(l)], b[l], sum);
          } else {
            for (int l = block_start[s]; l < block_start[s + 1]; ++l) sum = std::fma(a_row[size_t(l)], b[l], sum);
          }
          block_sum[s] = sum;
        }
        for (size_t width = 1; width < blocks; width *= 2) {
          for (size_t s = 0; s + width < blocks; s += 2 * width) block_sum[s] += block_sum[s + width];
        }
        float& c = C[size_t(i) + size_t(j) * size_t(ldc)];
        const float scaled = alpha * block_sum[0];
        c = beta == 0.0f ? scaled : std::fma(beta, c, scaled);
      }
    }
  }
};

void CUDART_CB run_gemm(void* user_data) {
  std::unique_ptr<GemmWork> work(static_cast<GemmWork*>(user_data));
  try {
    work->run();
  } catch (const std::exception& e) {
    char message[256];
    std::snprintf(message, sizeof(message),
                  "cublasGemmEx (executing on its stream, m=%d n=%d k=%d) failed: %s; C is incomplete",
                  work->m, work->n, work->k, e.what());
    if (svp_emu_execution_fault) {
      svp_emu_execution_fault(static_cast<int>(cudaErrorLaunchFailure), message);
    } else {
      svp_emu_diagnostic(message);
    }
  }
}

bool supported_input_type(cudaDataType_t t) { return t == CUDA_R_16F || t == CUDA_R_16BF || t == CUDA_R_32F; }

// The checks of the types and compute type cuBLAS makes, and how the
// stand-in rounds the inputs. Returns a status other than success when the
// call must fail.
int choose_rounding(const Handle& handle, cudaDataType_t a_type, cudaDataType_t b_type, cudaDataType_t c_type,
                    int compute_type, InputRounding& rounding) {
  if (!known_compute_type(compute_type)) return kStatusInvalidValue;
  const bool pedantic_compute = compute_type == kCompute32FPedantic;
  const bool fast_compute = compute_type == kCompute32FFast16F || compute_type == kCompute32FFast16BF ||
                            compute_type == kCompute32FFastTF32;
  if (compute_type != kCompute32F && !pedantic_compute && !fast_compute) {
    not_implemented("cublasGemmEx with a compute type other than CUBLAS_COMPUTE_32F*");
    return kStatusNotSupported;
  }
  // cuBLAS's table: the FAST compute types take float32 A, B and C only
  if (a_type != b_type) return kStatusNotSupported;
  if (fast_compute && (a_type != CUDA_R_32F || c_type != CUDA_R_32F)) return kStatusNotSupported;
  if (!supported_input_type(a_type)) {
    if (a_type == CUDA_R_8I) not_implemented("cublasGemmEx with CUDA_R_8I inputs");
    return kStatusNotSupported;
  }
  if (c_type != CUDA_R_32F) {
    if (c_type == a_type) not_implemented("cublasGemmEx with a 16-bit C");
    return kStatusNotSupported;
  }
  rounding = InputRounding::none;
  if (a_type != CUDA_R_32F) return kStatusSuccess;  // fp16/bf16 products are exact as they are
  const int base_mode = handle.math_mode & ~kDisallowReducedPrecisionReduction;
  if (pedantic_compute || base_mode == kPedanticMath) return kStatusSuccess;  // prescribed precision
  if (compute_type == kCompute32FFast16F) {
    rounding = InputRounding::fp16;
  } else if (compute_type == kCompute32FFast16BF) {
    rounding = InputRounding::bf16;
  } else if (compute_type == kCompute32FFastTF32) {
    rounding = InputRounding::tf32;
  } else if (base_mode == kTf32TensorOpMath) {  // compute 32F from here on
    rounding = InputRounding::tf32;
  } else if (base_mode == kTensorOpMath) {
    rounding = InputRounding::fp16;
  }
  // the environment overrides the program's TF32 choice either way
  if (handle.tf32_override == 0 && rounding == InputRounding::tf32) rounding = InputRounding::none;
  if (handle.tf32_override == 1 && rounding == InputRounding::none) rounding = InputRounding::tf32;
  return kStatusSuccess;
}

}  // namespace

// ---------------------------------------------------------- entry points --

SVP_CUBLAS_EXPORT int cublasCreate_v2(void** handle) {
  if (handle == nullptr) return kStatusInvalidValue;
  Handle* h = new (std::nothrow) Handle();
  if (h == nullptr) return kStatusAllocFailed;
  // read once per handle, as the library reads its environment at set-up
  if (const char* env = std::getenv("NVIDIA_TF32_OVERRIDE")) {
    if (std::strcmp(env, "0") == 0) h->tf32_override = 0;
    if (std::strcmp(env, "1") == 0) h->tf32_override = 1;
  }
  *handle = h;
  return kStatusSuccess;
}

SVP_CUBLAS_EXPORT int cublasSetStream_v2(void* handle, cudaStream_t stream) {
  Handle* h = valid_handle(handle);
  if (h == nullptr) return kStatusNotInitialized;
  h->stream = stream;
  return kStatusSuccess;
}

SVP_CUBLAS_EXPORT int cublasSetMathMode(void* handle, int mode) {
  Handle* h = valid_handle(handle);
  if (h == nullptr) return kStatusNotInitialized;
  const int base_mode = mode & ~kDisallowReducedPrecisionReduction;
  if (base_mode != kDefaultMath && base_mode != kTensorOpMath && base_mode != kPedanticMath &&
      base_mode != kTf32TensorOpMath && base_mode != kFp32EmulatedBf16x9Math &&
      base_mode != kFp64EmulatedFixedpointMath) {
    return kStatusInvalidValue;
  }
  h->math_mode = mode;
  return kStatusSuccess;
}

// C = alpha op(A) op(B) + beta C, column-major, alpha and beta host floats
// (the default pointer mode; the only one here).
SVP_CUBLAS_EXPORT int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                                   const void* A, cudaDataType_t Atype, int lda, const void* B,
                                   cudaDataType_t Btype, int ldb, const void* beta, void* C, cudaDataType_t Ctype,
                                   int ldc, int computeType, int algo) {
  Handle* h = valid_handle(handle);
  if (h == nullptr) return kStatusNotInitialized;
  auto valid_op = [](int op) { return op == kOpN || op == kOpT || op == kOpC; };
  if (!valid_op(transa) || !valid_op(transb)) return kStatusInvalidValue;
  if (m < 0 || n < 0 || k < 0) return kStatusInvalidValue;
  const int a_rows = transa == kOpN ? m : k;  // rows of A as stored
  const int b_rows = transb == kOpN ? k : n;
  auto at_least_one = [](int x) { return x > 1 ? x : 1; };
  if (lda < at_least_one(a_rows) || ldb < at_least_one(b_rows) || ldc < at_least_one(m)) return kStatusInvalidValue;
  InputRounding rounding = InputRounding::none;
  const int types = choose_rounding(*h, Atype, Btype, Ctype, computeType, rounding);
  if (types != kStatusSuccess) return types;
  if (!known_gemm_algo(algo)) return kStatusNotSupported;
  if (alpha == nullptr || beta == nullptr) return kStatusInvalidValue;
  if (m == 0 || n == 0) return kStatusSuccess;  // nothing to compute
  const float alpha_value = *static_cast<const float*>(alpha);
  const float beta_value = *static_cast<const float*>(beta);
  // A GPU would fault on a null matrix; here the call fails instead
  const bool reads_ab = alpha_value != 0.0f && k > 0;
  if (C == nullptr || (reads_ab && (A == nullptr || B == nullptr))) return kStatusInvalidValue;

  std::unique_ptr<GemmWork> work(new (std::nothrow) GemmWork{
      transa, transb, m, n, k, alpha_value, beta_value, A, Atype, lda, B, Btype, ldb, static_cast<float*>(C), ldc,
      rounding, static_cast<uint64_t>(svp_emu_random_u64())});
  if (!work) return kStatusAllocFailed;
  if (cudaLaunchHostFunc(h->stream, &run_gemm, work.get()) != cudaSuccess) return kStatusExecutionFailed;
  work.release();  // run_gemm frees it
  return kStatusSuccess;
}
