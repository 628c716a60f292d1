#include "prepare.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace svp {
namespace cpu {

MatrixFacts inspect(const MatrixView& X, const KernelTable& k, int threads,
                    double* norm64 /* [N] or null: filled with ||x|| */) {
  MatrixFacts facts;
  facts.min_norm = std::numeric_limits<double>::infinity();
  const int64_t n = X.rows;
  std::vector<MatrixFacts> per(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
  {
    MatrixFacts f;
    f.min_norm = std::numeric_limits<double>::infinity();
    const int tid = omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      RowFacts rf;
      k.row_facts(X.dtype, X.row(i), X.cols, &rf);
      if (rf.bad_col >= 0) {
        if (f.bad_row < 0) {
          f.bad_row = i;
          f.bad_col = rf.bad_col;
        }
        continue;
      }
      f.max_abs = std::max(f.max_abs, rf.max_abs);
      const double norm = std::sqrt(rf.sumsq);
      if (norm == 0 && f.zero_row < 0) f.zero_row = i;
      f.min_norm = std::min(f.min_norm, norm);
      f.max_norm = std::max(f.max_norm, norm);
      if (norm64) norm64[i] = norm;
    }
    per[static_cast<size_t>(tid)] = f;
  }
  for (const MatrixFacts& f : per) {
    if (f.bad_row >= 0 && (facts.bad_row < 0 || f.bad_row < facts.bad_row)) {
      facts.bad_row = f.bad_row;
      facts.bad_col = f.bad_col;
    }
    if (f.zero_row >= 0 && (facts.zero_row < 0 || f.zero_row < facts.zero_row))
      facts.zero_row = f.zero_row;
    facts.max_abs = std::max(facts.max_abs, f.max_abs);
    facts.min_norm = std::min(facts.min_norm, f.min_norm);
    facts.max_norm = std::max(facts.max_norm, f.max_norm);
  }
  if (facts.bad_row >= 0) {
    std::vector<double> row(static_cast<size_t>(X.cols));
    RowSource<double> src;
    src.X = X;
    src.center64(facts.bad_row, row.data());
    facts.bad_value = row[static_cast<size_t>(facts.bad_col)];
  }
  return facts;
}

void check_facts(const MatrixFacts& f, const MatrixView& X, Metric metric, const char* name) {
  if (f.bad_row >= 0)
    throw ValueError(format("%s must be finite, got %g at row %lld, column %lld", name,
                            f.bad_value, (long long)f.bad_row, (long long)f.bad_col));
  if (metric == Metric::cosine)
    SVP_CHECK_ARG(f.zero_row < 0,
                  "%s row %lld is all zeros; the cosine metric needs rows of nonzero norm",
                  name, (long long)f.zero_row);
  if (X.dtype == DType::f64)
    SVP_CHECK_ARG(f.max_abs <= 1e150,
                  "%s holds values up to %g, whose squared distances overflow float64; "
                  "rescale the embeddings",
                  name, f.max_abs);
}

bool needs_float64(const MatrixFacts& f, DType dtype, Metric metric, int64_t D) {
  return svp::needs_float64(dtype, metric, D, f.max_abs, f.min_norm, f.max_norm);
}

}  // namespace cpu
}  // namespace svp
