// Host tests of the cuBLAS stand-in (csrc/cuda_emu/cublas/cublas_emu.cpp),
// loaded as the project loads cuBLAS: dlopen, then dlsym of the four entry
// points with the C ABI of csrc/cuda/cublas_runtime.h.
//
// Accuracy is checked against a float64 reference with the bound any
// float32 summation order obeys when the products are exact (or rounded
// once): |C - ref| <= 2 k 2^-24 sum_l |a_il b_lj|.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <dlfcn.h>
#include <library_types.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "mock_runtime.h"

namespace {

// cuBLAS's values (cublas_api.h)
constexpr int kSuccess = 0, kNotInitialized = 1, kInvalidValue = 7, kExecutionFailed = 13, kNotSupported = 15;
constexpr int kOpN = 0, kOpT = 1, kOpC = 2;
constexpr int kDefaultMath = 0, kTensorOpMath = 1, kPedanticMath = 2, kTf32TensorOpMath = 3,
              kDisallowReducedPrecisionReduction = 16;
constexpr int kCompute32F = 68, kCompute32FPedantic = 69, kCompute64F = 70, kCompute32FFast16F = 74,
              kCompute32FFast16BF = 75, kCompute32FFastTF32 = 77;
constexpr int kGemmDefault = -1;

// the entry points, typed as csrc/cuda/cublas_runtime.h types them
struct Cublas {
  int (*create)(void**) = nullptr;
  int (*set_stream)(void*, cudaStream_t) = nullptr;
  int (*set_math_mode)(void*, int) = nullptr;
  int (*gemm_ex)(void*, int, int, int, int, int, const void*, const void*, cudaDataType_t, int, const void*,
                 cudaDataType_t, int, const void*, void*, cudaDataType_t, int, int, int) = nullptr;
};

// ----------------------------------------------------------- operands --

// A matrix as stored on the "device" (column-major, leading dimension ld,
// the padding rows NaN so that reading them shows), with its values decoded.
struct Operand {
  cudaDataType_t type = CUDA_R_32F;
  int rows = 0, cols = 0, ld = 0;
  std::vector<unsigned char> bytes;
  std::vector<double> value;  // rows x cols, column-major, no padding
  double at(int r, int c) const { return value[size_t(r) + size_t(c) * size_t(rows)]; }
  const void* data() const { return bytes.data(); }
};

size_t element_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

// Stores x (a float) as `type`; returns the value stored.
double store(Operand& op, size_t index, float x) {
  unsigned char* p = op.bytes.data() + index * element_size(op.type);
  if (op.type == CUDA_R_16F) {
    const __half h = __float2half_rn(x);
    std::memcpy(p, &h, 2);
    return __half2float(h);
  }
  if (op.type == CUDA_R_16BF) {
    const __nv_bfloat16 b = __float2bfloat16_rn(x);
    std::memcpy(p, &b, 2);
    return __bfloat162float(b);
  }
  std::memcpy(p, &x, 4);
  return x;
}

Operand make_operand(cudaDataType_t type, int rows, int cols, int ld, const std::function<float()>& draw) {
  Operand op;
  op.type = type;
  op.rows = rows;
  op.cols = cols;
  op.ld = ld;
  op.bytes.resize(size_t(ld) * size_t(cols > 0 ? cols : 1) * element_size(type));
  op.value.resize(size_t(rows) * size_t(cols));
  for (int c = 0; c < cols; ++c) {
    for (int r = 0; r < ld; ++r) {
      const size_t index = size_t(r) + size_t(c) * size_t(ld);
      if (r < rows) {
        op.value[size_t(r) + size_t(c) * size_t(rows)] = store(op, index, draw());
      } else {
        store(op, index, std::numeric_limits<float>::quiet_NaN());
      }
    }
  }
  return op;
}

Operand random_operand(cudaDataType_t type, int rows, int cols, int ld, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  return make_operand(type, rows, cols, ld, [&] { return u(rng); });
}

Operand scalar_operand(float x) {
  return make_operand(CUDA_R_32F, 1, 1, 1, [x] { return x; });
}

// TF32 rounding written independently of the stand-in: to nearest (ties to
// even, the default rounding of nearbyint) on a grid of 2^-10 of the
// leading power of two. Normal numbers only.
double reference_tf32(double x) {
  if (x == 0.0 || !std::isfinite(x)) return x;
  int exponent = 0;
  std::frexp(x, &exponent);  // |x| in [2^(exponent-1), 2^exponent)
  const double spacing = std::ldexp(1.0, exponent - 1 - 10);
  return std::nearbyint(x / spacing) * spacing;
}

// C = op(A) op(B) in float64, and sum |products| per entry, with the inputs
// optionally rounded first.
void reference_gemm(int transa, int transb, int m, int n, int k, const Operand& A, const Operand& B,
                    std::vector<double>& product, std::vector<double>& abs_sum,
                    const std::function<double(double)>& round_input = [](double x) { return x; }) {
  product.assign(size_t(m) * size_t(n), 0.0);
  abs_sum.assign(size_t(m) * size_t(n), 0.0);
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double s = 0.0, a = 0.0;
      for (int l = 0; l < k; ++l) {
        const double x = round_input(transa == kOpN ? A.at(i, l) : A.at(l, i));
        const double y = round_input(transb == kOpN ? B.at(l, j) : B.at(j, l));
        s += x * y;
        a += std::fabs(x * y);
      }
      product[size_t(i) + size_t(j) * size_t(m)] = s;
      abs_sum[size_t(i) + size_t(j) * size_t(m)] = a;
    }
  }
}

// Entries of C (ldc == m) outside the bound 2 k 2^-24 sum|a b| around ref.
int outside_fp32_bound(const std::vector<float>& C, const std::vector<double>& ref, const std::vector<double>& abs_sum,
                       int k) {
  int outside = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double bound = 2.0 * k * std::ldexp(1.0, -24) * abs_sum[i];
    if (!(std::fabs(double(C[i]) - ref[i]) <= bound)) ++outside;
  }
  return outside;
}

class CublasTests {
 public:
  explicit CublasTests(const Cublas& api) : api_(api) {}

  // Runs one GEMM to completion; returns its status.
  int gemm(void* h, int transa, int transb, int m, int n, int k, float alpha, const Operand& A, const Operand& B,
           float beta, std::vector<float>& C, int ldc, int compute, int algo = kGemmDefault) {
    const int status = api_.gemm_ex(h, transa, transb, m, n, k, &alpha, A.data(), A.type, A.ld, B.data(), B.type,
                                    B.ld, &beta, C.data(), CUDA_R_32F, ldc, compute, algo);
    mock::flush();
    return status;
  }

  void* new_handle() {
    void* h = nullptr;
    CHECK(api_.create(&h) == kSuccess && h != nullptr);
    kept_handles().push_back(h);  // kept for the process, as the project keeps its own (in a static)
    return h;
  }

  // x times 1 (k = m = n = 1): shows how an fp32 input was rounded.
  float product_with_one(void* h, float x, int compute) {
    std::vector<float> C(1, 0.0f);
    const Operand A = scalar_operand(x), B = scalar_operand(1.0f);
    CHECK(gemm(h, kOpT, kOpN, 1, 1, 1, 1.0f, A, B, 0.0f, C, 1, compute) == kSuccess);
    return C[0];
  }

  void run() {
    test_status_codes();
    test_accuracy_all_types_and_ops();
    test_order_is_not_naive();
    test_tf32_rounding();
    test_tf32_switches();
    test_reduced_precision_modes();
    test_scalars_and_stream();
  }

 private:
  void test_status_codes() {
    void* h = new_handle();
    std::mt19937_64 rng(1);
    const Operand A = random_operand(CUDA_R_32F, 4, 3, 4, rng), B = random_operand(CUDA_R_32F, 4, 2, 4, rng);
    std::vector<float> C(3 * 2, 0.0f);
    const float one = 1.0f, zero = 0.0f;
    auto call = [&](void* handle, int ta, int tb, int m, int n, int k, cudaDataType_t at, int lda, cudaDataType_t bt,
                    int ldb, cudaDataType_t ct, int ldc, int compute, int algo) {
      const int status = api_.gemm_ex(handle, ta, tb, m, n, k, &one, A.data(), at, lda, B.data(), bt,
                                      ldb, &zero, C.data(), ct, ldc, compute, algo);
      if (status != kSuccess) CHECK(mock::pending() == 0);  // a failed call enqueues nothing
      mock::flush();
      return status;
    };
    const auto f32 = CUDA_R_32F;
    // the project's call shape (T, N): A k x m, B k x n
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32FPedantic, kGemmDefault) == kSuccess);
    CHECK(call(nullptr, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kNotInitialized);
    CHECK(call(h, 3, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);
    CHECK(call(h, kOpT, -1, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);
    CHECK(call(h, kOpT, kOpN, -1, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);
    CHECK(call(h, kOpT, kOpN, 3, -2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);
    CHECK(call(h, kOpT, kOpN, 3, 2, -4, f32, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 3, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);  // lda < k
    CHECK(call(h, kOpN, kOpN, 3, 2, 4, f32, 2, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);  // lda < m
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 3, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);  // ldb < k
    CHECK(call(h, kOpT, kOpT, 3, 2, 4, f32, 4, f32, 1, f32, 3, kCompute32F, kGemmDefault) == kInvalidValue);  // ldb < n
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 2, kCompute32F, kGemmDefault) == kInvalidValue);  // ldc < m
    CHECK(call(h, kOpT, kOpN, 0, 2, 4, f32, 4, f32, 4, f32, 0, kCompute32F, kGemmDefault) == kInvalidValue);  // ldc < 1
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, 12345, kGemmDefault) == kInvalidValue);
    // unsupported combinations
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, CUDA_R_16F, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kNotSupported);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, CUDA_R_16F, 4, CUDA_R_16F, 4, f32, 3, kCompute32FFastTF32, kGemmDefault) ==
          kNotSupported);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, CUDA_R_16BF, 4, CUDA_R_16BF, 4, f32, 3, kCompute32FFast16F, kGemmDefault) ==
          kNotSupported);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, CUDA_R_64F, 4, CUDA_R_64F, 4, CUDA_R_64F, 3, kCompute32F, kGemmDefault) ==
          kNotSupported);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute64F, kGemmDefault) == kNotSupported);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, 50) == kNotSupported);
    // algorithms are hints: all of cuBLAS's are accepted
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, 99) == kSuccess);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, 7) == kSuccess);
    // null scalars
    CHECK(api_.gemm_ex(h, kOpT, kOpN, 3, 2, 4, nullptr, A.data(), f32, 4, B.data(), f32, 4, &zero, C.data(), f32, 3,
                       kCompute32F, kGemmDefault) == kInvalidValue);
    // nothing to do: success, nothing enqueued
    CHECK(api_.gemm_ex(h, kOpT, kOpN, 0, 2, 4, &one, A.data(), f32, 4, B.data(), f32, 4, &zero, C.data(), f32, 1,
                       kCompute32F, kGemmDefault) == kSuccess);
    CHECK(mock::pending() == 0);
    // the other entry points
    CHECK(api_.create(nullptr) == kInvalidValue);
    CHECK(api_.set_stream(nullptr, nullptr) == kNotInitialized);
    CHECK(api_.set_math_mode(nullptr, kDefaultMath) == kNotInitialized);
    CHECK(api_.set_math_mode(h, 7) == kInvalidValue);
    CHECK(api_.set_math_mode(h, 32) == kInvalidValue);
    CHECK(api_.set_math_mode(h, kDefaultMath | kDisallowReducedPrecisionReduction) == kSuccess);
    // a launch that fails: EXECUTION_FAILED, the work not leaked (ASan)
    mock::fail_next_launch(cudaErrorLaunchFailure);
    CHECK(call(h, kOpT, kOpN, 3, 2, 4, f32, 4, f32, 4, f32, 3, kCompute32F, kGemmDefault) == kExecutionFailed);
  }

  // Every input type with the compute types the project uses, every pair of
  // operations, padded leading dimensions: within the bound.
  void test_accuracy_all_types_and_ops() {
    void* h = new_handle();
    CHECK(api_.set_math_mode(h, kDefaultMath | kDisallowReducedPrecisionReduction) == kSuccess);
    std::mt19937_64 rng(2);
    const int m = 7, n = 5, k = 300;
    const cudaDataType_t types[] = {CUDA_R_16F, CUDA_R_16BF, CUDA_R_32F};
    const int ops[][2] = {{kOpT, kOpN}, {kOpN, kOpN}, {kOpN, kOpT}, {kOpC, kOpC}};
    for (cudaDataType_t type : types) {
      for (const auto& op : ops) {
        const int a_rows = op[0] == kOpN ? m : k, a_cols = op[0] == kOpN ? k : m;
        const int b_rows = op[1] == kOpN ? k : n, b_cols = op[1] == kOpN ? n : k;
        const Operand A = random_operand(type, a_rows, a_cols, a_rows + 3, rng);
        const Operand B = random_operand(type, b_rows, b_cols, b_rows + 1, rng);
        std::vector<double> ref, abs_sum;
        reference_gemm(op[0], op[1], m, n, k, A, B, ref, abs_sum);
        const int computes[] = {kCompute32F, kCompute32FPedantic};
        for (int compute : computes) {
          const int ldc = m + 2;
          std::vector<float> C(size_t(ldc) * n, std::numeric_limits<float>::quiet_NaN()), packed;
          CHECK(gemm(h, op[0], op[1], m, n, k, 1.0f, A, B, 0.0f, C, ldc, compute) == kSuccess);
          for (int j = 0; j < n; ++j) {
            for (int i = 0; i < m; ++i) packed.push_back(C[size_t(i) + size_t(j) * ldc]);
          }
          if (!CHECK(outside_fp32_bound(packed, ref, abs_sum, k) == 0)) {
            std::fprintf(stderr, "  type %d ops (%d, %d) compute %d\n", int(type), op[0], op[1], compute);
          }
          CHECK(std::isnan(C[m]));  // the padding rows of C untouched
        }
      }
    }
  }

  // The float32 sums are not the sequential ones, and change with the seed.
  void test_order_is_not_naive() {
    void* h = new_handle();
    std::mt19937_64 rng(3);
    const int m = 8, n = 8, k = 3000;
    const Operand A = random_operand(CUDA_R_32F, k, m, k, rng), B = random_operand(CUDA_R_32F, k, n, k, rng);
    std::vector<float> naive(size_t(m) * n);
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < m; ++i) {
        float s = 0.0f;
        for (int l = 0; l < k; ++l) s = std::fma(float(A.at(l, i)), float(B.at(l, j)), s);
        naive[size_t(i) + size_t(j) * m] = s;
      }
    }
    std::vector<float> first(size_t(m) * n), second(size_t(m) * n);
    mock::seed_random(100);
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 1.0f, A, B, 0.0f, first, m, kCompute32FPedantic) == kSuccess);
    mock::seed_random(200);
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 1.0f, A, B, 0.0f, second, m, kCompute32FPedantic) == kSuccess);
    int differ_from_naive = 0, differ_between_seeds = 0;
    for (size_t i = 0; i < first.size(); ++i) {
      differ_from_naive += first[i] != naive[i];
      differ_between_seeds += first[i] != second[i];
    }
    CHECK(differ_from_naive > 0);
    CHECK(differ_between_seeds > 0);
    std::vector<double> ref, abs_sum;
    reference_gemm(kOpT, kOpN, m, n, k, A, B, ref, abs_sum);
    CHECK(outside_fp32_bound(first, ref, abs_sum, k) == 0);
    CHECK(outside_fp32_bound(second, ref, abs_sum, k) == 0);
  }

  void test_tf32_rounding() {
    void* h = new_handle();
    // one input through the TF32 conversion: nearest, ties to even
    const float u = std::ldexp(1.0f, -11);  // half a TF32 unit at 1
    CHECK(product_with_one(h, 1.0f + u / 2, kCompute32FFastTF32) == 1.0f);
    CHECK(product_with_one(h, 1.0f + u, kCompute32FFastTF32) == 1.0f);                 // tie: to even
    CHECK(product_with_one(h, 1.0f + 3 * u, kCompute32FFastTF32) == 1.0f + 4 * u);     // tie: to even (up)
    CHECK(product_with_one(h, 1.0f + u + u / 4, kCompute32FFastTF32) == 1.0f + 2 * u);  // above half: up
    CHECK(product_with_one(h, -(1.0f + u / 2), kCompute32FFastTF32) == -1.0f);
    CHECK(std::isinf(product_with_one(h, std::numeric_limits<float>::infinity(), kCompute32FFastTF32)));
    CHECK(product_with_one(h, 1.0f + u / 2, kCompute32FPedantic) == 1.0f + u / 2);
    CHECK(product_with_one(h, 1.0f + u / 2, kCompute32F) == 1.0f + u / 2);

    // random data: within the bound of the TF32-rounded inputs, with errors
    // far above float32's
    std::mt19937_64 rng(4);
    const int m = 6, n = 6, k = 500;
    const Operand A = random_operand(CUDA_R_32F, k, m, k, rng), B = random_operand(CUDA_R_32F, k, n, k, rng);
    std::vector<float> tf32(size_t(m) * n), fp32(size_t(m) * n);
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 1.0f, A, B, 0.0f, tf32, m, kCompute32FFastTF32) == kSuccess);
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 1.0f, A, B, 0.0f, fp32, m, kCompute32FPedantic) == kSuccess);
    std::vector<double> ref, abs_sum, ref_tf32, abs_sum_tf32;
    reference_gemm(kOpT, kOpN, m, n, k, A, B, ref, abs_sum);
    reference_gemm(kOpT, kOpN, m, n, k, A, B, ref_tf32, abs_sum_tf32, reference_tf32);
    CHECK(outside_fp32_bound(tf32, ref_tf32, abs_sum_tf32, k) == 0);
    CHECK(outside_fp32_bound(fp32, ref, abs_sum, k) == 0);
    double tf32_error = 0.0, fp32_error = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
      tf32_error = std::fmax(tf32_error, std::fabs(tf32[i] - ref[i]));
      fp32_error = std::fmax(fp32_error, std::fabs(fp32[i] - ref[i]));
    }
    CHECK(tf32_error > 30.0 * fp32_error);  // 10 mantissa bits against 23
    // on short sums TF32 breaks the float32 bound itself
    const int short_k = 4;
    const Operand As = random_operand(CUDA_R_32F, short_k, m, short_k, rng);
    const Operand Bs = random_operand(CUDA_R_32F, short_k, n, short_k, rng);
    std::vector<float> short_tf32(size_t(m) * n);
    CHECK(gemm(h, kOpT, kOpN, m, n, short_k, 1.0f, As, Bs, 0.0f, short_tf32, m, kCompute32FFastTF32) == kSuccess);
    reference_gemm(kOpT, kOpN, m, n, short_k, As, Bs, ref, abs_sum);
    CHECK(outside_fp32_bound(short_tf32, ref, abs_sum, short_k) > m * n / 2);
  }

  // Where TF32 is allowed: the compute type, the math mode, the environment.
  void test_tf32_switches() {
    const float x = 1.0f + std::ldexp(1.0f, -12);  // TF32 makes it 1
    void* h = new_handle();
    CHECK(api_.set_math_mode(h, kTf32TensorOpMath) == kSuccess);
    CHECK(product_with_one(h, x, kCompute32F) == 1.0f);
    CHECK(product_with_one(h, x, kCompute32FPedantic) == x);
    CHECK(api_.set_math_mode(h, kTf32TensorOpMath | kDisallowReducedPrecisionReduction) == kSuccess);
    CHECK(product_with_one(h, x, kCompute32F) == 1.0f);
    CHECK(api_.set_math_mode(h, kPedanticMath) == kSuccess);  // prescribed precision throughout
    CHECK(product_with_one(h, x, kCompute32FFastTF32) == x);
    CHECK(api_.set_math_mode(h, kDefaultMath) == kSuccess);
    CHECK(product_with_one(h, x, kCompute32F) == x);
    // the project's settings: no TF32
    CHECK(api_.set_math_mode(h, kDefaultMath | kDisallowReducedPrecisionReduction) == kSuccess);
    CHECK(product_with_one(h, x, kCompute32FPedantic) == x);

    setenv("NVIDIA_TF32_OVERRIDE", "1", 1);
    void* on = new_handle();
    CHECK(product_with_one(on, x, kCompute32F) == 1.0f);
    CHECK(product_with_one(on, x, kCompute32FPedantic) == x);
    setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
    void* off = new_handle();
    CHECK(product_with_one(off, x, kCompute32FFastTF32) == x);
    CHECK(api_.set_math_mode(off, kTf32TensorOpMath) == kSuccess);
    CHECK(product_with_one(off, x, kCompute32F) == x);
    unsetenv("NVIDIA_TF32_OVERRIDE");
  }

  // The other reduced-precision conversions of float32 inputs.
  void test_reduced_precision_modes() {
    void* h = new_handle();
    const float big = 1.0e5f;  // beyond fp16's 65504, fine in TF32 and bf16
    CHECK(std::isinf(product_with_one(h, big, kCompute32FFast16F)));
    CHECK(product_with_one(h, 1.0f + std::ldexp(1.0f, -12), kCompute32FFast16F) == 1.0f);
    CHECK(product_with_one(h, 1.0f + std::ldexp(1.0f, -8), kCompute32FFast16BF) == 1.0f);  // tie: to even
    CHECK(product_with_one(h, 1.0f + std::ldexp(1.0f, -7), kCompute32FFast16BF) == 1.0f + std::ldexp(1.0f, -7));
    CHECK(std::isfinite(product_with_one(h, big, kCompute32FFast16BF)));
    // the deprecated TENSOR_OP math: float32 GEMMs as 32F_FAST_16F
    CHECK(api_.set_math_mode(h, kTensorOpMath) == kSuccess);
    CHECK(std::isinf(product_with_one(h, big, kCompute32F)));
    CHECK(product_with_one(h, big, kCompute32FPedantic) == big);
    // fp16 and bf16 inputs are never rounded further (exact products)
    std::vector<float> C(1, 0.0f);
    const Operand a16 = make_operand(CUDA_R_16F, 1, 1, 1, [] { return 1.0f + std::ldexp(1.0f, -10); });
    const Operand b16 = make_operand(CUDA_R_16F, 1, 1, 1, [] { return 1.0f - std::ldexp(1.0f, -11); });
    CHECK(gemm(h, kOpT, kOpN, 1, 1, 1, 1.0f, a16, b16, 0.0f, C, 1, kCompute32F) == kSuccess);
    CHECK(double(C[0]) == a16.value[0] * b16.value[0]);
  }

  void test_scalars_and_stream() {
    void* h = new_handle();
    std::mt19937_64 rng(5);
    const int m = 3, n = 4, k = 5;
    Operand A = random_operand(CUDA_R_32F, k, m, k, rng);
    const Operand B = random_operand(CUDA_R_32F, k, n, k, rng);
    std::vector<double> ref, abs_sum;
    reference_gemm(kOpT, kOpN, m, n, k, A, B, ref, abs_sum);
    // beta = 0: C is not read (NaN there does not survive)
    std::vector<float> C(size_t(m) * n, std::numeric_limits<float>::quiet_NaN());
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 1.0f, A, B, 0.0f, C, m, kCompute32FPedantic) == kSuccess);
    CHECK(outside_fp32_bound(C, ref, abs_sum, k) == 0);
    // alpha and beta: C = 0.5 AB + 2 C
    std::vector<float> C2(size_t(m) * n, 3.0f);
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 0.5f, A, B, 2.0f, C2, m, kCompute32FPedantic) == kSuccess);
    bool scaled = true;
    for (size_t i = 0; i < C2.size(); ++i) {
      if (std::fabs(C2[i] - (0.5 * ref[i] + 6.0)) > 1e-5) scaled = false;
    }
    CHECK(scaled);
    // alpha = 0: A and B not read; k = 0: C = beta C
    store(A, 0, std::numeric_limits<float>::quiet_NaN());
    std::vector<float> C3(size_t(m) * n, 3.0f);
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 0.0f, A, B, 2.0f, C3, m, kCompute32F) == kSuccess);
    CHECK(C3[0] == 6.0f && C3.back() == 6.0f);
    CHECK(gemm(h, kOpT, kOpN, m, n, 0, 1.0f, A, B, 0.5f, C3, m, kCompute32F) == kSuccess);
    CHECK(C3[0] == 3.0f);
    // the work runs on the handle's stream, in stream order
    CHECK(gemm(h, kOpT, kOpN, m, n, k, 1.0f, B, B, 0.0f, C3, m, kCompute32F) == kSuccess);
    CHECK(mock::last_stream() == nullptr);  // the default stream until one is set
    const cudaStream_t stream = reinterpret_cast<cudaStream_t>(uintptr_t(0x5000));
    CHECK(api_.set_stream(h, stream) == kSuccess);
    std::fill(C3.begin(), C3.end(), 7.0f);
    const float one = 1.0f, zero = 0.0f;
    CHECK(api_.gemm_ex(h, kOpT, kOpN, m, n, k, &one, B.data(), CUDA_R_32F, k, B.data(), CUDA_R_32F, k, &zero,
                       C3.data(), CUDA_R_32F, m, kCompute32F, kGemmDefault) == kSuccess);
    CHECK(mock::last_stream() == stream);
    CHECK(mock::pending() == 1 && C3[0] == 7.0f);  // not before the stream runs it
    mock::flush();
    CHECK(C3[0] != 7.0f);
  }

  // never destroyed, so that the handles stay reachable at exit (LeakSanitizer
  // scans after static destructors have run)
  static std::vector<void*>& kept_handles() {
    static std::vector<void*>* handles = new std::vector<void*>();
    return *handles;
  }

  const Cublas& api_;
};

}  // namespace

void run_cublas_tests(const char* library_path) {
  // the fp16/bf16 conversions of the real headers, which the stand-in uses
  __half_raw h;
  h.x = 0x3C00;
  CHECK(__half2float(__half(h)) == 1.0f);
  h.x = 0x0001;
  CHECK(__half2float(__half(h)) == std::ldexp(1.0f, -24));
  h.x = 0x7BFF;
  CHECK(__half2float(__half(h)) == 65504.0f);
  __nv_bfloat16_raw b;
  b.x = 0x3F81;
  CHECK(__bfloat162float(__nv_bfloat16(b)) == 1.0f + std::ldexp(1.0f, -7));

  void* library = dlopen(library_path, RTLD_NOW | RTLD_LOCAL);
  if (!CHECK(library != nullptr)) {
    std::fprintf(stderr, "  dlopen(%s): %s\n", library_path, dlerror());
    return;
  }
  Cublas api;
  api.create = reinterpret_cast<decltype(api.create)>(dlsym(library, "cublasCreate_v2"));
  api.set_stream = reinterpret_cast<decltype(api.set_stream)>(dlsym(library, "cublasSetStream_v2"));
  api.set_math_mode = reinterpret_cast<decltype(api.set_math_mode)>(dlsym(library, "cublasSetMathMode"));
  api.gemm_ex = reinterpret_cast<decltype(api.gemm_ex)>(dlsym(library, "cublasGemmEx"));
  if (!CHECK(api.create && api.set_stream && api.set_math_mode && api.gemm_ex)) return;
  CublasTests(api).run();
  // the library stays loaded: its handles live for the process, as cuBLAS's
}
