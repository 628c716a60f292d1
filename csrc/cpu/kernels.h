// CPU kernels, compiled once per instruction set (kernels_impl.h included by
// kernels_avx512.cpp, kernels_avx2.cpp, kernels_generic.cpp) and chosen at run
// time by the CPU's features (override: SVP_FAST_SIMD=avx512|avx2|generic).
#pragma once

#include <cstdint>

#include "svp/common.h"
#include "svp/uncertainty.h"
#include "svp/uncertainty_exact.h"

namespace svp {
namespace cpu {

// Squared distances, accumulated in Acc (float or double):
//   out[r] = sum_j (row_r[j] * scale[r] - center[j])^2   (scale == nullptr: 1)
// rows: [n] pointers to rows of `dtype` with D elements; center: [D].
template <typename Acc>
using D2RowsFn = void (*)(DType dtype, const char* const* rows, const Acc* scale,
                          int64_t n, const Acc* center, int64_t D, Acc* out);

// Per-row facts for input validation and norms.
struct RowFacts {
  double sumsq;     // sum of squares, float64
  double max_abs;   // largest |x_j| among finite entries
  int64_t bad_col;  // first column holding NaN or +-Inf, or -1
};
using RowFactsFn = void (*)(DType dtype, const char* row, int64_t D, RowFacts* out);
// The first column of a row holding NaN or +-Inf, or -1 (one integer pass).
using NonfiniteColFn = int64_t (*)(DType dtype, const char* row, int64_t D);

// Uncertainty, fast pass (svp/uncertainty_exact.h): for each of n rows of C
// classes, score[r] (the reported score) and, where key is not null, the
// ranking key key[r] with its bound err[r] (float32 arithmetic for
// float32/16/bf16 rows, bound by cpu_fast_model; float64 rows and rows whose
// bound would be poor are computed by the float64 formulas, err[r] = 0).
// Returns the index of the first row that is not a valid input (a probability
// row that is not a distribution) or -1.
using ScoreRowsFn = int64_t (*)(DType dtype, const char* const* rows, int64_t n,
                                int64_t C, UncertaintyMethod method, ScoreInput input,
                                double probs_tolerance, double* score, double* key,
                                float* err);
// The float64 formulas (the refinement of the fast keys): score and key of n
// rows that are known to be valid input.
using ExactRowsFn = void (*)(DType dtype, const char* const* rows, int64_t n, int64_t C,
                             UncertaintyMethod method, ScoreInput input, double probs_tolerance,
                             double* score, double* key);
// The fast pass's elementary functions, for the tests of their bounds:
// which = 0: float32 exp, 1: float32 log, 2: float64 exp (on n values).
using UncFunctionFn = void (*)(int which, const void* in, int64_t n, void* out);

// The bounds every ISA's fast uncertainty kernels obey (checked exhaustively
// over the float32 inputs they can receive by unc_function_error, see
// python_tests/test_uncertainty.py):
//   exp:  |fexp(x) - e^x| <= kCpuExpRelU 2^-24 e^x + 2^-125 on [-104, 0]
//   log:  |flog(p) - log p| <= kCpuLogRelU 2^-24 |log p| for normal p in (0, 1]
// Sums that make a key: float32 partial sums of kUncFlushVectors vectors per
// lane, flushed into float64 accumulators; products rounded once.
// (measured exhaustively: exp at most 1.99, log at most 1.35 on every ISA)
constexpr double kCpuExpRelU = 2.5;
constexpr double kCpuLogRelU = 2.0;
constexpr int kUncFlushVectors = 4;

inline unc::FastModel cpu_fast_model(int64_t C) {
  unc::FastModel m;
  m.exp_rel = kCpuExpRelU * unc::kU32;
  m.log_rel = kCpuLogRelU * unc::kU32;
  // a lane adds kUncFlushVectors terms in float32 (one rounding each after the
  // first), then at most C / 4 + 8 float64 additions
  m.sum_rel = 1.001 * (kUncFlushVectors - 1) * unc::kU32 + (static_cast<double>(C) + 64.0) * unc::kU64;
  // V (entropy's bound) is not summed but bounded by a_max U (fast_logits)
  m.aux_sum_rel = 0;
  m.prod_rel = unc::kU32;
  return m;
}

// The lazy engine's refresh of a tile of rows (at most 16) against the
// centers j0 .. j0+nc-1 (Euclidean): m, m2, assign of the tile's rows updated
// in place; a row skips centers before its last[r]. Rows and centers are raw
// rows of `dtype` (float32, float16 or bfloat16; 16-bit values widen to
// float32 as they load, exactly), accumulated in float32; 4 rows x 4 centers
// are accumulated in registers at once.
using RefreshTileFn = void (*)(DType dtype, const char* const* rows, int64_t cnt,
                               const char* const* centers, int64_t j0, int64_t nc, int64_t D,
                               const int64_t* last, float* m, float* m2, int64_t* assign);

// Dot products of a block of rows with a block of centers, for the product
// screen (product_screen.h):
//   out[r * ldo + c] = sum_j x_r[j] * y_c[j]   (r < nr, c < nc)
// rows: [nr] pointers to raw rows of `dtype` with D elements (widened exactly
// to Acc as they load; float64 rows only with Acc = double); centers: y_c at
// centers + c * ldc, D values each. Accumulated as svp/exactness.h's kernels
// accumulate: each lane adds at most ceil(D / 8) (float) or ceil(D / 4)
// (double) products by FMA, then a tree of at most 7 levels sums the lanes.
template <typename Acc>
using DotBlockFn = void (*)(DType dtype, const char* const* rows, int64_t nr, const Acc* centers,
                            int64_t ldc, int64_t nc, int64_t D, Acc* out, int64_t ldo);

// A center's vector in the working space, rounded to Acc: out[j] =
// Acc(double(x_j) / norm), or Acc(double(x_j)) for norm == 0 (Euclidean):
// the float64 division rounded once, then once more to Acc, as the scalar
// RowSource::center64 followed by a cast.
template <typename Acc>
using CenterVecFn = void (*)(DType dtype, const char* row, int64_t D, double norm, Acc* out);

// The pruned engine's annulus test over n members of a cell (float32
// state). Each member has its distance p[i] to the cell's centroid and q0[i],
// q1[i] to the cell's two pivots; the center is at dc, dq0, dq1 from them.
// With lb the largest of |dc - p[i]| - krel (dc + p[i]) and the same for
// (dq0, q0[i]) and (dq1, q1[i]), in float64, member i survives when live
// (m[i] >= 0) and not ruled out by lb > 0 && lb^2 >= m[i]. A live member
// ruled out gets m2[i] = min(m2[i], float(lb^2 * down)). The survivors'
// indices base + i are appended to keep; returns their count.
using AnnulusFn = int64_t (*)(const float* m, const double* p, const double* q0,
                              const double* q1, int64_t n, double dc, double dq0, double dq1,
                              double krel, double down, int64_t base, float* m2, int64_t* keep);

// The two largest values of m[0..n) as a multiset (out[1] == out[0] when the
// largest occurs twice); -1 where there are fewer than two values >= -1.
// The pruned engine's cells hold float32 values >= 0 for live members and -1
// for excluded ones.
using Max2Fn = void (*)(const float* m, int64_t n, float* out);

struct KernelTable {
  const char* name;
  D2RowsFn<float> d2_rows_f32;
  D2RowsFn<double> d2_rows_f64;
  RowFactsFn row_facts;
  NonfiniteColFn nonfinite_col;
  ScoreRowsFn score_rows;
  RefreshTileFn refresh_tile;
  AnnulusFn annulus;
  Max2Fn max2;
  ExactRowsFn exact_rows;
  UncFunctionFn unc_function;
  DotBlockFn<float> dot_block_f32;
  DotBlockFn<double> dot_block_f64;
  CenterVecFn<float> center_vec_f32;
  CenterVecFn<double> center_vec_f64;
};

// The table in use (the best ISA this CPU supports, unless overridden).
const KernelTable& kernels();
// A specific ISA's table, or nullptr if it is not compiled or not supported here.
const KernelTable* kernels_for(const char* isa);
// kernels_for(isa), or kernels() for null; a ValueError naming `isa` if it is
// not available here.
const KernelTable& kernels_or_throw(const char* isa);
// ISAs compiled into this build, e.g. "avx512,avx2,generic".
const char* kernels_compiled();

// Per-ISA tables (defined in the per-ISA translation units).
const KernelTable* table_avx512();
const KernelTable* table_avx2();
const KernelTable* table_generic();

}  // namespace cpu
}  // namespace svp
