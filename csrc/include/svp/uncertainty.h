// Uncertainty scores (higher = more uncertain) and a top-k over them.
//
// Scores of one row p = softmax(z) (or p given):
//   least_confidence = 1 - max p
//   entropy          = -sum p log p            (natural log; 0 log 0 = 0)
//   margin           = 1 - (p_(1) - p_(2))     (two largest probabilities)
// Logits are turned into probabilities by a stable softmax that never stores p.
//
// The top-k is that of float64 arithmetic on every backend: rows are ranked by
// keys that keep their digits (1 - p1 = T / (1 + T) is ranked by T = S - 1,
// p1 - p2 = -expm1(z2 - z1) / S, entropy = log1p(T) + U / S), float32 keys
// with a proven bound decide where they can, float64 decides the rest, and
// float64 values within float64's own error are ties, to the lowest index.
// svp/uncertainty_exact.h states the contract.
#pragma once

#include <cstdint>

#include "svp/common.h"

namespace svp {

enum class UncertaintyMethod : int { least_confidence = 0, entropy = 1, margin = 2 };
enum class ScoreInput : int { logits = 0, probs = 1 };

struct UncertaintyOptions {
  UncertaintyMethod method = UncertaintyMethod::least_confidence;
  ScoreInput input = ScoreInput::logits;
  bool check_finite = true;
  // probabilities only: reject rows that are not distributions (any p < -tol,
  // or |sum p - 1| > tol).
  double probs_tolerance = 1e-3;
  int num_threads = 0;
  const char* arg_name = "x";
  const char* simd = nullptr;  // force a kernel ISA ("avx512", "avx2", "generic")
};

// What the certified top-k did.
struct UncertaintyStats {
  int64_t candidates = 0;    // rows sorted by their fast keys (the top k and the band below)
  int64_t rows_refined = 0;  // rows recomputed in float64
  int64_t tie_groups = 0;    // groups of rows that the fast bounds could not order
  int64_t passes = 0;        // gathers of the band (1 unless a group ran past it)
};

// scores: [N] output, float64 (the fast pass's scores: float32 arithmetic for
// float32/16/bf16 input, float64 for float64 input; the caller casts).
void uncertainty_scores_cpu(const MatrixView& X, const UncertaintyOptions& opt,
                            double* scores);

// The k most uncertain rows, most uncertain first: the float64 reference's
// top-k. order: [k] output row indices; top_scores: [k] output (their scores,
// non-increasing) or null; stats: output or null.
void uncertainty_topk_cpu(const MatrixView& X, const UncertaintyOptions& opt, int64_t k,
                          int64_t* order, double* top_scores, UncertaintyStats* stats);

// Test hook: each row's fast key, its bound and its score (exact = false), or
// the float64 formulas' key and score (exact = true, err set to 0).
void uncertainty_keys_cpu(const MatrixView& X, const UncertaintyOptions& opt, bool exact,
                          double* key, float* err, double* score);

// Test hook: the error of one ISA's fast-pass function (which = 0: float32
// exp on [-104, 0], 1: float32 log on [2^-126, 1], 2: float64 exp on
// [-746, 0]; 3: the fast epilogue's 1 - e^x, 4: its log1p, both as plain
// relative errors) against a more precise libm, over every float32 between lo
// and hi taking every stride-th bit pattern (which >= 2: `stride` evenly spread
// samples). max_rel: the largest relative error where the exact value is above
// 2^-120 (2^-1000 for which = 2), in units of 2^-24 (2^-53 for which = 2);
// max_abs_tiny: the largest absolute error where it is not.
struct FunctionError {
  double max_rel = 0, worst_at = 0, max_abs_tiny = 0;
  int64_t count = 0;
  // the error over both sets of inputs (a thread's share joining the total)
  void merge(const FunctionError& o) {
    if (o.max_rel > max_rel) {
      max_rel = o.max_rel;
      worst_at = o.worst_at;
    }
    max_abs_tiny = o.max_abs_tiny > max_abs_tiny ? o.max_abs_tiny : max_abs_tiny;
    count += o.count;
  }
};
FunctionError uncertainty_function_error(const char* isa, int which, double lo, double hi,
                                         int64_t stride, int num_threads);

}  // namespace svp
