// The arithmetic contract shared by every backend (CPU engines, CUDA kernels,
// distributed shards): when float64 arithmetic is used, and how far a computed
// squared distance may be from the exact one. Header-only, host and device.
//
// Certified argmax (see csrc/cpu/kcenter.cpp): a step is decided in fast
// arithmetic unless two candidates lie within 2 E(M) of the best value M; then
// float64 decides, and float64 values within exact_tie(v) of the largest are
// ties, broken by the lowest index.
#pragma once

#include <cmath>
#include <cstdint>

#include "svp/common.h"

#if defined(__CUDACC__)
#define SVP_HD __host__ __device__ inline
#else
#define SVP_HD inline
#endif

namespace svp {

// |computed - exact| <= E(v) = eps*v + alpha*sqrt(v) + beta for a computed v.
struct ErrorModel {
  double eps = 0, alpha = 0, beta = 0;
  SVP_HD double E(double v) const {
    if (!(v < 1.0e308)) return 0;  // +inf: no bound needed
    return eps * v + alpha * sqrt(v > 0 ? v : 0.0) + beta;
  }
};

// Accumulation structure every kernel obeys: a row's D terms (x_j*s - c_j)^2
// are split over lanes, each lane adds at most ceil(D/8) terms (ceil(D/4) with
// float64 accumulators) by FMA, then the lanes are summed by a tree of at most
// 7 levels (CPU: 16, 8 or 4 lanes, GPU: at most 32 lanes of 16-byte chunks;
// the generic CPU kernels sum their 8 lanes in sequence: 7 more roundings).
// Any such order of n non-negative terms errs by at most gamma_n <= 1.01 n u of
// the sum, so with the rounded difference (2u) and the tree:
//   eps = 2 * (ceil(D/L) + 7 + 3) * u,   L = 8 (float32) or 4 (float64)
// doubled for margin. Cosine rows are scaled by 1/||x|| (float64, rounded
// once), which moves a unit-norm squared distance by at most 4u sqrt(v) + 4u^2.
SVP_HD ErrorModel error_model(bool float64_acc, Metric metric, int64_t D) {
  const double u = float64_acc ? 1.1102230246251565e-16 /* 2^-53 */
                               : 5.9604644775390625e-08 /* 2^-24 */;
  const double tiny = float64_acc ? 8.289046e-317 /* 2^-1050 */ : 3.5873241e-43 /* 2^-141 */;
  const int64_t lanes = float64_acc ? 4 : 8;
  const double terms = static_cast<double>((D + lanes - 1) / lanes) + 10.0;
  ErrorModel e;
  e.eps = 2.0 * 1.01 * terms * u;
  e.beta = 2.0 * (static_cast<double>(D) + 2.0) * tiny;
  if (metric == Metric::cosine) {
    e.alpha = 2.0 * 4.0 * u;
    e.beta += 2.0 * 4.0 * u * u;
  }
  return e;
}

// Error bound of the float64 ("exact") path: float32/16 differences and their
// squares are exact in float64, only the sum rounds (any order: D u); cosine
// rows are divided by their float64 norms, a common scale error of about
// (D/2 + 2) 2^-53 per row, which moves v by at most (2D + 8) 2^-53 sqrt(v).
// Doubled, then doubled again for margin.
SVP_HD ErrorModel exact_tie_model(Metric metric, int64_t D) {
  const double u = 1.1102230246251565e-16;
  const double d = static_cast<double>(D);
  ErrorModel e;
  e.eps = 4.0 * (d + 2.0) * u;
  e.alpha = metric == Metric::cosine ? 4.0 * (2.0 * d + 8.0) * u : 0.0;
  e.beta = 4.0 * (d + 2.0) * 8.289046e-317;
  return e;
}

// The model of the ambiguity band: E_band = E + tie/2, so the band
// [M - 2 E_band(M), M] also spans the float64 tie tolerance. Without it, two
// values the exact path would call a tie (lowest index wins) could still be
// decided by fast arithmetic, differently on different backends.
SVP_HD ErrorModel band_model(const ErrorModel& fast, const ErrorModel& tie) {
  ErrorModel b;
  b.eps = fast.eps + 0.5 * tie.eps;
  b.alpha = fast.alpha + 0.5 * tie.alpha;
  b.beta = fast.beta + 0.5 * tie.beta;
  return b;
}

// float32 arithmetic unless the input is float64 or its squared distances
// could leave float32's normal range (then float64 arithmetic: same picks).
// max_abs: largest |x|; min_norm/max_norm: row norms (cosine).
SVP_HD bool needs_float64(DType dtype, Metric metric, int64_t D, double max_abs,
                          double min_norm, double max_norm) {
  if (dtype == DType::f64) return true;
  if (metric == Metric::euclidean) {
    const double hi = 4e18 / sqrt(static_cast<double>(D));
    return max_abs > hi || (max_abs > 0 && max_abs < 9.094947017729282e-13 /* 2^-40 */);
  }
  return min_norm < 7.888609052210118e-31 /* 2^-100 */ ||
         max_norm > 1.2676506002282294e30 /* 2^100 */;
}

}  // namespace svp
