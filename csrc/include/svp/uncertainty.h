// Uncertainty scores (higher = more uncertain) and a top-k over them.
//
// Scores of one row p = softmax(z) (or p given):
//   least_confidence = 1 - max p
//   entropy          = -sum p log p            (natural log; 0 log 0 = 0)
//   margin           = 1 - (p_(1) - p_(2))     (two largest probabilities)
// Logits are turned into probabilities by a stable softmax that never stores p.
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

// scores: [N] output (float64 for float64 input in the core, cast by the caller).
void uncertainty_scores_cpu(const MatrixView& X, const UncertaintyOptions& opt,
                            double* scores);

// The k highest scores, highest first, ties to the lowest index.
// order: [k] output row indices; top_scores: [k] output or null.
void topk_desc(const double* scores, int64_t n, int64_t k, int64_t* order,
               double* top_scores, int num_threads);

}  // namespace svp
