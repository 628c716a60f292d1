// Small geometric helpers for choosing an engine (not on the selection path).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "svp/kcenter.h"

namespace svp {

void two_nearest_distances(const double* x, int64_t n, int64_t D, int num_threads, double* r1,
                           double* r2) {
  const cpu::KernelTable& k = cpu::kernels();
  std::vector<const char*> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[i] = reinterpret_cast<const char*>(x + i * D);
  const int threads = num_threads > 0 ? num_threads : std::max(1, omp_get_max_threads());
#pragma omp parallel num_threads(threads)
  {
    std::vector<double> d2(static_cast<size_t>(n));
#pragma omp for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; ++i) {
      k.d2_rows_f64(DType::f64, rows.data(), nullptr, n, x + i * D, D, d2.data());
      double a = std::numeric_limits<double>::infinity(), b = a;
      for (int64_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const double v = d2[j];
        if (v < a) {
          b = a;
          a = v;
        } else if (v < b) {
          b = v;
        }
      }
      r1[i] = std::sqrt(a);
      r2[i] = std::sqrt(b);
    }
  }
}

}  // namespace svp
