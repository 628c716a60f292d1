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

// The precision rule of svp/exactness.h on these facts.
bool needs_float64(const MatrixFacts& f, DType dtype, Metric metric, int64_t D);

}  // namespace cpu
}  // namespace svp
