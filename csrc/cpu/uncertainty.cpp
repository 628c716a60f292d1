// Uncertainty on the CPU: one fast pass over the rows (parallel over rows),
// then the certified top-k of svp/uncertainty_exact.h: a k-selection of the
// fast keys, the band of rows whose bounds reach the k-th, a sort of those,
// float64 for the groups of rows the bounds cannot order, and the greedy rule
// with ties inside each such group.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels.h"
#include "svp/uncertainty.h"
#include "svp/uncertainty_exact.h"

namespace svp {

namespace {

int thread_count(const UncertaintyOptions& opt) {
  return opt.num_threads > 0 ? opt.num_threads : std::max(1, omp_get_max_threads());
}

double decode_value(const MatrixView& X, int64_t row, int64_t col) {
  const char* p = X.row(row);
  const size_t sz = dtype_size(X.dtype);
  if (X.dtype == DType::f32) {
    float f;
    std::memcpy(&f, p + sz * col, 4);
    return f;
  }
  if (X.dtype == DType::f64) {
    double v;
    std::memcpy(&v, p + sz * col, 8);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p + sz * col, 2);
  const bool f16 = X.dtype == DType::f16;
  const bool nan = f16 ? ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu))
                       : ((h & 0x7f80u) == 0x7f80u && (h & 0x7fu));
  return nan ? std::numeric_limits<double>::quiet_NaN()
             : ((h & 0x8000u) ? -std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::infinity());
}

// Validates X and runs the fast pass: score [N] always, key [N] and err [N]
// when not null.
void fast_pass(const MatrixView& X, const UncertaintyOptions& opt, const cpu::KernelTable& kt,
               int threads, double* score, double* key, float* err) {
  const char* name = opt.arg_name ? opt.arg_name : "x";
  const int64_t n = X.rows, C = X.cols;
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
          const int64_t col = kt.nonfinite_col(X.dtype, X.row(i), C);
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
      const int64_t r = kt.score_rows(X.dtype, ptrs.data(), hi - lo, C, opt.method, opt.input,
                                      opt.probs_tolerance, score + lo, key ? key + lo : nullptr,
                                      err ? err + lo : nullptr);
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
    throw ValueError(format("%s must be finite, got %g at row %lld, column %lld", name,
                            decode_value(X, bad_finite_row, bad_finite_col),
                            (long long)bad_finite_row, (long long)bad_finite_col));
  }
  if (bad_prob_row != std::numeric_limits<int64_t>::max()) {
    throw ValueError(format(
        "%s row %lld is not a probability distribution (entries must be >= 0 and sum to 1 "
        "within %g); pass inputs='logits' if these are logits",
        name, (long long)bad_prob_row, opt.probs_tolerance));
  }
}

// The k-th largest of v[0..n) (1 <= k <= n). For k well below n, a threshold
// from a sample keeps only the values above it for the exact selection (one
// pass instead of nth_element over everything); if too few are above it, all.
double kth_largest(const double* v, int64_t n, int64_t k) {
  std::vector<double> vals;
  if (k <= n / 8 && n > 65536) {
    const int64_t m = 16384, stride = n / m;
    std::vector<double> sample(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) sample[i] = v[i * stride];
    // the sample's value at twice the wanted share, plus a margin
    const int64_t r = std::min<int64_t>(m - 1, (2 * k * m) / n + 32);
    std::nth_element(sample.begin(), sample.begin() + r, sample.end(), std::greater<double>());
    const double t = sample[static_cast<size_t>(r)];
    vals.reserve(static_cast<size_t>(4 * k + 1024));
    for (int64_t i = 0; i < n; ++i)
      if (v[i] >= t) vals.push_back(v[i]);
    if (static_cast<int64_t>(vals.size()) < k) vals.clear();  // the sample misled: all
  }
  if (vals.empty()) vals.assign(v, v + n);
  std::nth_element(vals.begin(), vals.begin() + (k - 1), vals.end(), std::greater<double>());
  return vals[static_cast<size_t>(k - 1)];
}

void check_shape(const MatrixView& X, const UncertaintyOptions& opt) {
  const char* name = opt.arg_name ? opt.arg_name : "x";
  SVP_CHECK_ARG(X.rows >= 1 && X.cols >= 1,
                "%s must be a non-empty 2-D array, got shape (%lld, %lld)", name,
                (long long)X.rows, (long long)X.cols);
}

}  // namespace

void uncertainty_scores_cpu(const MatrixView& X, const UncertaintyOptions& opt,
                            double* scores) {
  check_shape(X, opt);
  const cpu::KernelTable& kt = cpu::kernels_or_throw(opt.simd);
  fast_pass(X, opt, kt, thread_count(opt), scores, nullptr, nullptr);
}

void uncertainty_topk_cpu(const MatrixView& X, const UncertaintyOptions& opt, int64_t k,
                          int64_t* order, double* top_scores, UncertaintyStats* stats) {
  check_shape(X, opt);
  const int64_t n = X.rows, C = X.cols;
  SVP_CHECK_ARG(k >= 0 && k <= n, "budget must be in [0, %lld], got %lld", (long long)n,
                (long long)k);
  const cpu::KernelTable& kt = cpu::kernels_or_throw(opt.simd);
  const int threads = thread_count(opt);
  std::vector<double> score(static_cast<size_t>(n)), key(static_cast<size_t>(n));
  std::vector<float> err(static_cast<size_t>(n));
  fast_pass(X, opt, kt, threads, score.data(), key.data(), err.data());
  UncertaintyStats st;
  if (k == 0) {
    if (stats) *stats = st;
    return;
  }
  const unc::TieModel tie = unc::tie_model(opt.method, opt.input, C, opt.probs_tolerance);
  const double ud2 = 2.0 * unc::kU64;
  // Bounds on any conforming float64 value g of row i (err == 0: g itself),
  // with the rounding of key +- err covered.
  auto lower = [&](int64_t i) {
    const double e = err[i];
    if (e == 0) return key[i];
    const double v = key[i] - e;
    return v - ud2 * std::fabs(v);
  };
  auto upper = [&](int64_t i) {
    const double e = err[i];
    if (e == 0) return key[i];
    const double v = key[i] + e;
    return v + ud2 * std::fabs(v);
  };
  auto sep = [&](int64_t i) { return tie.below(lower(i)); };

  const double kth = kth_largest(key.data(), n, k);
  // Rows outside the candidates have upper < band; the candidates are split
  // into groups on the sorted fast keys (see uncertainty_exact.h). The split
  // after the group holding position k - 1 is sound when its lowest separation
  // value is at least band; otherwise the band is lowered and rows gathered
  // again.
  double band = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i)
    if (key[i] >= kth) band = std::min(band, sep(i));
  auto by_key = [&](int64_t a, int64_t b) {
    return key[a] > key[b] || (key[a] == key[b] && a < b);
  };
  std::vector<int64_t> cand, more;
  std::vector<double> prefix_sep, suffix_up;
  int64_t end = 0;  // last position of the group holding position k - 1
  double gathered_to = std::numeric_limits<double>::infinity();  // rows with upper >= this are in
  double step = 0;
  for (;;) {
    ++st.passes;
    // the rows not yet gathered with upper in [band, gathered_to), sorted and
    // merged into the sorted candidates
    more.clear();
    for (int64_t i = 0; i < n; ++i) {
      const bool in_before = st.passes > 1 && (key[i] >= kth || upper(i) >= gathered_to);
      if (!in_before && (key[i] >= kth || upper(i) >= band)) more.push_back(i);
    }
    std::sort(more.begin(), more.end(), by_key);
    const size_t old_size = cand.size();
    cand.insert(cand.end(), more.begin(), more.end());
    std::inplace_merge(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(old_size), cand.end(),
                       by_key);
    gathered_to = band;
    const int64_t m = static_cast<int64_t>(cand.size());
    prefix_sep.assign(static_cast<size_t>(m), 0.0);
    suffix_up.assign(static_cast<size_t>(m + 1), -std::numeric_limits<double>::infinity());
    for (int64_t p = 0; p < m; ++p)
      prefix_sep[p] = std::min(p ? prefix_sep[p - 1] : std::numeric_limits<double>::infinity(),
                               sep(cand[p]));
    for (int64_t p = m - 1; p >= 0; --p) suffix_up[p] = std::max(suffix_up[p + 1], upper(cand[p]));
    end = m - 1;
    for (int64_t p = k - 1; p < m - 1; ++p) {
      if (prefix_sep[p] > suffix_up[p + 1]) {
        end = p;
        break;
      }
    }
    if (m == n || prefix_sep[end] >= band) break;
    // the group ran past the band: lower it beyond where the group reached, by
    // a step that grows fourfold with each pass, so that a long chain of
    // near-ties needs few passes
    step = std::max(4.0 * step, band - prefix_sep[end]);
    band = prefix_sep[end] - step;
  }
  st.candidates = static_cast<int64_t>(cand.size());

  // groups within [0, end]; rows of groups of two or more go to float64
  std::vector<int64_t> group_start;
  std::vector<int64_t> refine;
  for (int64_t a = 0; a <= end;) {
    int64_t b = a;
    while (b < end && !(prefix_sep[b] > suffix_up[b + 1])) ++b;
    if (b > a) {
      group_start.push_back(a);
      for (int64_t p = a; p <= b; ++p)
        if (err[cand[p]] != 0.0f) refine.push_back(cand[p]);
    }
    a = b + 1;
  }
  group_start.push_back(end + 1);
  st.rows_refined = static_cast<int64_t>(refine.size());
  std::sort(refine.begin(), refine.end());  // in memory order
  st.tie_groups = static_cast<int64_t>(group_start.size()) - 1;
  if (!refine.empty()) {
    const int64_t chunk = 16;
    const int64_t n_chunks = (static_cast<int64_t>(refine.size()) + chunk - 1) / chunk;
    // a few rows are not worth waking the threads (on a busy machine a
    // parallel region can cost a time slice)
    const int refine_threads =
        static_cast<double>(refine.size()) * static_cast<double>(C) < 1048576.0 ? 1 : threads;
#pragma omp parallel num_threads(refine_threads)
    {
      const char* ptrs[chunk];
      double s[chunk], g[chunk];
#pragma omp for schedule(dynamic, 4)
      for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t lo = c * chunk;
        const int64_t cnt = std::min<int64_t>(chunk, static_cast<int64_t>(refine.size()) - lo);
        for (int64_t j = 0; j < cnt; ++j) ptrs[j] = X.row(refine[lo + j]);
        kt.exact_rows(X.dtype, ptrs, cnt, C, opt.method, opt.input, opt.probs_tolerance, s, g);
        for (int64_t j = 0; j < cnt; ++j) {
          const int64_t i = refine[lo + j];
          score[i] = s[j];
          key[i] = g[j];
          err[i] = 0.0f;
        }
      }
    }
  }

  // the order: groups of one row by their fast keys, larger groups by the
  // greedy rule on float64 values
  std::vector<int64_t> ranked(cand.begin(), cand.begin() + std::min<int64_t>(end + 1, k));
  std::vector<int64_t> pos, heap, idx, idx_sorted;
  std::vector<double> g, g_sorted;
  std::vector<unsigned char> taken;
  for (size_t q = 0; q + 1 < group_start.size(); ++q) {
    const int64_t a = group_start[q];
    int64_t b = a;
    while (b < end && !(prefix_sep[b] > suffix_up[b + 1])) ++b;
    const int64_t s = b - a + 1;
    pos.resize(static_cast<size_t>(s));
    g.resize(static_cast<size_t>(s));
    idx.resize(static_cast<size_t>(s));
    for (int64_t j = 0; j < s; ++j) {
      pos[j] = j;
      idx[j] = cand[a + j];
      g[j] = key[idx[j]];
    }
    unc::heap_sort_desc(pos.data(), s, g.data(), idx.data());
    g_sorted.resize(static_cast<size_t>(s));
    idx_sorted.resize(static_cast<size_t>(s));
    for (int64_t j = 0; j < s; ++j) {
      g_sorted[j] = g[pos[j]];
      idx_sorted[j] = idx[pos[j]];
    }
    heap.resize(static_cast<size_t>(s));
    taken.resize(static_cast<size_t>(s));
    unc::greedy_with_ties(g_sorted.data(), idx_sorted.data(), s, std::min(s, k - a), tie,
                          heap.data(), taken.data(), ranked.data() + a);
  }
  for (int64_t j = 0; j < k; ++j) {
    order[j] = ranked[j];
    if (top_scores) {
      // the reported scores follow the order (they differ from the ranked keys
      // only by their final roundings)
      const double v = score[ranked[j]];
      top_scores[j] = j ? std::min(v, top_scores[j - 1]) : v;
    }
  }
  if (stats) *stats = st;
}

void uncertainty_keys_cpu(const MatrixView& X, const UncertaintyOptions& opt, bool exact,
                          double* key, float* err, double* score) {
  check_shape(X, opt);
  const cpu::KernelTable& kt = cpu::kernels_or_throw(opt.simd);
  fast_pass(X, opt, kt, thread_count(opt), score, key, err);
  if (!exact) return;
  std::vector<const char*> ptrs(static_cast<size_t>(X.rows));
  for (int64_t i = 0; i < X.rows; ++i) {
    ptrs[i] = X.row(i);
    err[i] = 0.0f;
  }
  kt.exact_rows(X.dtype, ptrs.data(), X.rows, X.cols, opt.method, opt.input, opt.probs_tolerance,
                score, key);
}

FunctionError uncertainty_function_error(const char* isa, int which, double lo, double hi,
                                         int64_t stride, int num_threads) {
  SVP_CHECK_ARG(which >= 0 && which <= 4, "which must be in [0, 4], got %d", which);
  SVP_CHECK_ARG(stride >= 1, "stride must be >= 1, got %lld", (long long)stride);
  const cpu::KernelTable& kt = cpu::kernels_or_throw(isa);
  const int threads = num_threads > 0 ? num_threads : std::max(1, omp_get_max_threads());
  FunctionError out;
  const int64_t block = 4096;
  if (which >= 3) {
    // the fast epilogue's 1 - e^x on [lo, hi] (x <= 0) and log1p(T) on [lo, hi]
    // (T >= 0), at `stride` points spread evenly, against long double
    FunctionError e;
    for (int64_t i = 0; i < stride; ++i) {
      const double x = lo + (hi - lo) * (static_cast<double>(i) / static_cast<double>(std::max<int64_t>(1, stride - 1)));
      long double ref, got;
      if (which == 3) {
        ref = -std::expm1(static_cast<long double>(x));
        got = unc::one_minus_exp(x);
      } else {
        ref = std::log1p(static_cast<long double>(x));
        got = unc::log1p_nonnegative(x, 1.0 + x);
      }
      if (ref == 0) continue;
      const double rel = static_cast<double>(std::fabs(got - ref) / std::fabs(ref));
      if (rel > e.max_rel) {
        e.max_rel = rel;
        e.worst_at = x;
      }
      ++e.count;
    }
    return e;
  }
  if (which == 2) {
    const int64_t n_blocks = (stride + block - 1) / block;
#pragma omp parallel num_threads(threads)
    {
      FunctionError mine;
      std::vector<double> x(block), y(block);
#pragma omp for schedule(dynamic, 8)
      for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t i0 = b * block, cnt = std::min(block, stride - i0);
        for (int64_t j = 0; j < cnt; ++j)
          x[j] = lo + (hi - lo) * (static_cast<double>(i0 + j) / static_cast<double>(std::max<int64_t>(1, stride - 1)));
        kt.unc_function(2, x.data(), cnt, y.data());
        for (int64_t j = 0; j < cnt; ++j) {
          const long double ref = std::exp(static_cast<long double>(x[j]));
          const long double e = std::fabs(static_cast<long double>(y[j]) - ref);
          if (ref >= 9.332636185032189e-302L /* 2^-1000 */) {
            const double rel = static_cast<double>(e / ref / 1.1102230246251565e-16L);
            if (rel > mine.max_rel) {
              mine.max_rel = rel;
              mine.worst_at = x[j];
            }
          } else {
            mine.max_abs_tiny = std::max(mine.max_abs_tiny, static_cast<double>(e));
          }
        }
        mine.count += cnt;
      }
#pragma omp critical
      out.merge(mine);
    }
    return out;
  }
  // every stride-th float32 bit pattern between lo and hi (same sign)
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  uint32_t blo, bhi;
  std::memcpy(&blo, &flo, 4);
  std::memcpy(&bhi, &fhi, 4);
  if (blo > bhi) std::swap(blo, bhi);
  const int64_t total = (static_cast<int64_t>(bhi) - blo) / stride + 1;
  const int64_t n_blocks = (total + block - 1) / block;
#pragma omp parallel num_threads(threads)
  {
    FunctionError mine;
    std::vector<float> x(block), y(block);
#pragma omp for schedule(dynamic, 64)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t i0 = b * block, cnt = std::min(block, total - i0);
      for (int64_t j = 0; j < cnt; ++j) {
        const uint32_t bits = static_cast<uint32_t>(blo + (i0 + j) * stride);
        std::memcpy(&x[j], &bits, 4);
      }
      kt.unc_function(which, x.data(), cnt, y.data());
      for (int64_t j = 0; j < cnt; ++j) {
        const double xv = x[j], yv = y[j];
        if (which == 0) {
          const double ref = std::exp(xv);
          const double e = std::fabs(yv - ref);
          if (ref >= 7.52316384526264e-37 /* 2^-120 */) {
            const double rel = e / ref / unc::kU32;
            if (rel > mine.max_rel) {
              mine.max_rel = rel;
              mine.worst_at = xv;
            }
          } else {
            mine.max_abs_tiny = std::max(mine.max_abs_tiny, e);
          }
        } else {
          const double ref = std::log(xv);
          if (ref == 0) {
            if (yv != 0) mine.max_rel = std::numeric_limits<double>::infinity();
            continue;
          }
          const double rel = std::fabs(yv - ref) / std::fabs(ref) / unc::kU32;
          if (rel > mine.max_rel) {
            mine.max_rel = rel;
            mine.worst_at = xv;
          }
        }
      }
      mine.count += cnt;
    }
#pragma omp critical
    out.merge(mine);
  }
  return out;
}

}  // namespace svp
