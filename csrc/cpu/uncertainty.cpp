// Uncertainty scores on the CPU: one pass over the rows, parallel over rows;
// then a k-selection (nth_element + sort of the k best).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels.h"
#include "svp/uncertainty.h"

namespace svp {

void uncertainty_scores_cpu(const MatrixView& X, const UncertaintyOptions& opt,
                            double* scores) {
  const char* name = opt.arg_name ? opt.arg_name : "x";
  const int64_t n = X.rows, C = X.cols;
  SVP_CHECK_ARG(n >= 1 && C >= 1, "%s must be a non-empty 2-D array, got shape (%lld, %lld)",
                name, (long long)n, (long long)C);
  const cpu::KernelTable& k = cpu::kernels_or_throw(opt.simd);
  const int threads = opt.num_threads > 0 ? opt.num_threads : std::max(1, omp_get_max_threads());
  const int64_t chunk = 64;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  int64_t bad_finite_row = std::numeric_limits<int64_t>::max(), bad_finite_col = -1;
  int64_t bad_prob_row = std::numeric_limits<int64_t>::max();
#pragma omp parallel num_threads(threads)
  {
    std::vector<const char*> ptrs(static_cast<size_t>(chunk));
    int64_t my_bad_row = std::numeric_limits<int64_t>::max(), my_bad_col = -1;
    int64_t my_bad_prob = std::numeric_limits<int64_t>::max();
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t lo = c * chunk, hi = std::min(n, lo + chunk);
      for (int64_t i = lo; i < hi; ++i) ptrs[i - lo] = X.row(i);
      if (opt.check_finite) {
        bool bad = false;
        for (int64_t i = lo; i < hi; ++i) {
          const int64_t col = k.nonfinite_col(X.dtype, X.row(i), C);
          if (col >= 0) {
            if (i < my_bad_row) {
              my_bad_row = i;
              my_bad_col = col;
            }
            bad = true;
            break;
          }
        }
        if (bad) continue;
      }
      const int64_t r = k.score_rows(X.dtype, ptrs.data(), hi - lo, C, opt.method, opt.input,
                                     opt.probs_tolerance, scores + lo);
      if (r >= 0) my_bad_prob = std::min(my_bad_prob, lo + r);
    }
#pragma omp critical
    {
      if (my_bad_row < bad_finite_row) {
        bad_finite_row = my_bad_row;
        bad_finite_col = my_bad_col;
      }
      bad_prob_row = std::min(bad_prob_row, my_bad_prob);
    }
  }
  if (bad_finite_row != std::numeric_limits<int64_t>::max()) {
    double v = 0;
    {
      // decode the offending value for the message
      const char* p = X.row(bad_finite_row);
      const size_t sz = dtype_size(X.dtype);
      if (X.dtype == DType::f32) {
        float f;
        std::memcpy(&f, p + sz * bad_finite_col, 4);
        v = f;
      } else if (X.dtype == DType::f64) {
        std::memcpy(&v, p + sz * bad_finite_col, 8);
      } else {
        uint16_t h;
        std::memcpy(&h, p + sz * bad_finite_col, 2);
        const bool f16 = X.dtype == DType::f16;
        const bool nan = f16 ? ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu))
                             : ((h & 0x7f80u) == 0x7f80u && (h & 0x7fu));
        v = nan ? std::numeric_limits<double>::quiet_NaN()
                : ((h & 0x8000u) ? -std::numeric_limits<double>::infinity()
                                 : std::numeric_limits<double>::infinity());
      }
    }
    throw ValueError(format("%s must be finite, got %g at row %lld, column %lld", name, v,
                            (long long)bad_finite_row, (long long)bad_finite_col));
  }
  if (bad_prob_row != std::numeric_limits<int64_t>::max()) {
    throw ValueError(format(
        "%s row %lld is not a probability distribution (entries must be >= 0 and sum to 1 "
        "within %g); pass inputs='logits' if these are logits",
        name, (long long)bad_prob_row, opt.probs_tolerance));
  }
}

void topk_desc(const double* scores, int64_t n, int64_t k, int64_t* order, double* top_scores,
               int num_threads) {
  (void)num_threads;
  SVP_CHECK_ARG(k >= 0 && k <= n, "budget must be in [0, %lld], got %lld", (long long)n,
                (long long)k);
  if (k == 0) return;
  // NaN ranks last (it can only come from unchecked input)
  auto key = [&](int64_t i) {
    const double v = scores[i];
    return std::isnan(v) ? -std::numeric_limits<double>::infinity() : v;
  };
  auto cmp = [&](int64_t a, int64_t b) {
    const double ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  };
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), cmp);
  std::sort(idx.begin(), idx.begin() + k, cmp);
  for (int64_t j = 0; j < k; ++j) {
    order[j] = idx[j];
    if (top_scores) top_scores[j] = scores[idx[j]];
  }
}

}  // namespace svp
