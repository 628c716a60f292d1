// Preparation shared by the k-center drivers (single process and shards):
// one validation pass over the matrix, the choice of arithmetic, and the
// error model of the certified argmax.
#pragma once

#include <cstdint>

#include "engine.h"
#include "kernels.h"
#include "svp/common.h"

namespace svp {
namespace cpu {

// Facts about the whole matrix from one parallel pass.
struct MatrixFacts {
  int64_t bad_row = -1, bad_col = -1;
  double bad_value = 0;
  double max_abs = 0;
  int64_t zero_row = -1;  // first all-zero row (cosine)
  double min_norm = 0;    // +inf when no finite row
  double max_norm = 0;
};

// norm64: [N] filled with ||x|| (float64), or null.
MatrixFacts inspect(const MatrixView& X, const KernelTable& k, int threads, double* norm64);

// Raise the user errors the facts reveal (NaN/Inf; zero rows for cosine;
// float64 values whose squares overflow).
void check_facts(const MatrixFacts& f, const MatrixView& X, Metric metric, const char* name);

// float32 arithmetic unless the input is float64 or its squared distances
// could leave float32's normal range (then float64 arithmetic: same picks).
bool needs_float64(const MatrixFacts& f, DType dtype, Metric metric, int64_t D);

ErrorModel error_model(bool float64_acc, Metric metric, int64_t D);

// Error bound of the float64 ("exact") path: values within it of each other are
// ties, decided by the lowest index. Euclidean: float32/16 differences and
// squares are exact in float64, only the sum rounds; cosine: rows are divided
// by their float64 norms, a common scale error of about (D/2 + 2) 2^-53 per
// row, which moves a squared distance v by at most about (2D + 8) 2^-53 sqrt(v).
// Every term is doubled, then the whole bound doubled again for margin.
ErrorModel exact_tie_model(Metric metric, int64_t D);

}  // namespace cpu
}  // namespace svp
