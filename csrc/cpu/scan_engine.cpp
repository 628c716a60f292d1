#include "scan_engine.h"

#include <omp.h>

#include <limits>

namespace svp {
namespace cpu {

namespace {

// take_center_distance (engine.h) over a chunk of rows, written without
// branches so that it compiles to vector compares and blends. Excluded rows
// (m = -1) are left as they are.
template <typename Acc>
inline void update_min_impl(const Acc* __restrict d, Acc* __restrict m, Acc* __restrict m2,
                            int64_t* __restrict assign, int64_t cnt, int64_t ord) {
  for (int64_t r = 0; r < cnt; ++r) {
    const Acc dr = d[r], mr = m[r], m2r = m2[r];
    const bool lower = dr < mr;
    const bool live = mr >= Acc(0);
    m2[r] = lower ? mr : (live && dr < m2r ? dr : m2r);
    m[r] = lower ? dr : mr;
    assign[r] = lower ? ord : assign[r];
  }
}

// Compiled for AVX-512, AVX2 and the baseline, chosen at load time by the CPU
// (the arithmetic is exact compares and copies: every version agrees).
__attribute__((target_clones("avx512f", "avx2", "default"))) void update_min(
    const float* d, float* m, float* m2, int64_t* assign, int64_t cnt, int64_t ord) {
  update_min_impl(d, m, m2, assign, cnt, ord);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void update_min(
    const double* d, double* m, double* m2, int64_t* assign, int64_t cnt, int64_t ord) {
  update_min_impl(d, m, m2, assign, cnt, ord);
}

}  // namespace

template <typename Acc>
ScanEngine<Acc>::ScanEngine(const RowSource<Acc>& src, int num_threads)
    : src_(src), threads_(num_threads), screen_(src, num_threads) {
  const int64_t n = src.X.rows;
  m_.assign(static_cast<size_t>(n), std::numeric_limits<Acc>::infinity());
  m2_.assign(static_cast<size_t>(n), std::numeric_limits<Acc>::infinity());
  assign_.assign(static_cast<size_t>(n), -1);
  // Rows per kernel call: enough to amortise the call, few enough that a
  // chunk stays in L2 while a batch of centers passes over it.
  const int64_t row_bytes = src.X.cols * static_cast<int64_t>(dtype_size(src.X.dtype));
  chunk_ = std::max<int64_t>(16, std::min<int64_t>(256, (256 << 10) / std::max<int64_t>(row_bytes, 1)));
}

template <typename Acc>
void ScanEngine<Acc>::add_centers(const CenterRef* refs, const int64_t* ordinals, int64_t q) {
  const int64_t n = src_.X.rows, D = src_.X.cols;
  centers_.resize(static_cast<size_t>(q * D));
  for (int64_t k = 0; k < q; ++k) src_.center(refs[k], centers_.data() + k * D);
  const D2RowsFn<Acc> d2 = src_.d2();
  const int64_t chunk = chunk_;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  Acc* m = m_.data();
  Acc* m2 = m2_.data();
  int64_t* assign = assign_.data();
  const Acc* centers = centers_.data();
  const Acc* scale = src_.scale;
  const MatrixView& X = src_.X;

  // Many centers at once (a batched pass, or already_selected): through the
  // product screen, center_block centers per kernel call.
  const bool product = screen_.worth(q);
  std::vector<double> cf;
  const int64_t cblock = product_tuning().center_block;
  if (product) {
    screen_.prepare();
    cf.resize(static_cast<size_t>(2 * q));
    screen_.center_facts(refs, q, cf.data());
  }

  std::vector<Top2> tops(static_cast<size_t>(std::max(threads_, 1)));
  std::vector<int64_t> evals(tops.size(), 0), recomputes(tops.size(), 0);
  scratch_.resize(tops.size());
#pragma omp parallel num_threads(threads_)
  {
    const int tid = omp_get_thread_num();
    const int nt = omp_get_num_threads();
    std::vector<const char*> ptrs(static_cast<size_t>(chunk));
    std::vector<Acc> sc(static_cast<size_t>(chunk)), out(static_cast<size_t>(chunk));
    std::vector<int64_t> ids(product ? static_cast<size_t>(chunk) : 0);
    typename ProductScreen<Acc>::Scratch& scratch = scratch_[static_cast<size_t>(tid)];
    Top2 top;
    int64_t my_evals = 0, my_recomputes = 0;
    // contiguous ranges of chunks per thread: each thread streams its rows
    const int64_t per = (n_chunks + nt - 1) / nt;
    const int64_t c_lo = tid * per, c_hi = std::min(n_chunks, c_lo + per);
    for (int64_t c = c_lo; c < c_hi; ++c) {
      const int64_t lo = c * chunk, hi = std::min(n, lo + chunk), cnt = hi - lo;
      // Every row of the chunk, excluded ones too (at most `budget` of them):
      // contiguous state lets the update below run as vector code.
      for (int64_t r = 0; r < cnt; ++r) ptrs[r] = X.row(lo + r);
      if (scale) std::copy(scale + lo, scale + hi, sc.data());
      if (product) {
        for (int64_t r = 0; r < cnt; ++r) ids[r] = lo + r;
        for (int64_t k0 = 0; k0 < q; k0 += cblock) {
          const int64_t nc = std::min(cblock, q - k0);
          my_recomputes += screen_.apply(ids.data(), ptrs.data(), scale ? sc.data() : nullptr,
                                         cnt, centers + k0 * D, D, cf.data() + 2 * k0, nc,
                                         ordinals + k0, nullptr, m + lo, m2 + lo, assign + lo,
                                         scratch);
        }
      } else {
        for (int64_t k = 0; k < q; ++k) {
          d2(X.dtype, ptrs.data(), scale ? sc.data() : nullptr, cnt, centers + k * D, D,
             out.data());
          update_min(out.data(), m + lo, m2 + lo, assign + lo, cnt, ordinals[k]);
        }
      }
      int64_t live = 0;
      for (int64_t r = 0; r < cnt; ++r) live += m[lo + r] >= Acc(0);
      my_evals += live * q;
      // top-2 of the live rows: rows come in index order, so only a value at
      // least the current second can enter (ties are settled by push)
      double floor2 = top.i2 >= 0 ? top.v2 : 0.0;
      for (int64_t r = 0; r < cnt; ++r) {
        const double v = static_cast<double>(m[lo + r]);
        if (v >= floor2) {  // excluded rows hold -1
          top.push(v, lo + r);
          if (top.i2 >= 0) floor2 = top.v2;
        }
      }
    }
    tops[static_cast<size_t>(tid)] = top;
    evals[static_cast<size_t>(tid)] = my_evals;
    recomputes[static_cast<size_t>(tid)] = my_recomputes;
  }
  top_ = Top2();
  for (size_t t = 0; t < tops.size(); ++t) {
    top_.merge(tops[t]);
    evals_ += evals[t];
    if (product) product_pairs_ += evals[t];
    product_recomputes_ += recomputes[t];
  }
}

template <typename Acc>
void ScanEngine<Acc>::band(double thr, std::vector<BandMember>& out) {
  const int64_t n = src_.X.rows;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(m_[i]);
    if (v >= 0 && v >= thr) out.push_back({i, v, static_cast<double>(m2_[i]), assign_[i]});
  }
}

template <typename Acc>
double ScanEngine<Acc>::top_candidates(int64_t T, std::vector<BandMember>& out) {
  // Every value is current: the T best of all live points. The pool must
  // hold the T + 1 best; a strided sample sets a floor that at least T + 1
  // live values reach (its own (T+1)-th largest), so that only the rows at or
  // above it are collected and sorted, not all N.
  const int64_t n = src_.X.rows;
  std::vector<std::pair<double, int64_t>> pool;
  double floor = -0.5;  // live values are >= 0
  if (n > 64 * (T + 1)) {
    std::vector<double> sample;
    const int64_t stride = n / (16 * (T + 1));
    for (int64_t i = 0; i < n; i += stride)
      if (m_[i] >= Acc(0)) sample.push_back(static_cast<double>(m_[i]));
    if (static_cast<int64_t>(sample.size()) > T + 1) {
      std::nth_element(sample.begin(), sample.begin() + T, sample.end(), std::greater<double>());
      floor = sample[static_cast<size_t>(T)];  // at least T+1 live values are >= floor
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(m_[i]);
    if (v >= 0 && v >= floor) pool.push_back({v, i});
  }
  return select_top<Acc>(pool, T, [&](int64_t i) {
    return BandMember{i, static_cast<double>(m_[i]), static_cast<double>(m2_[i]), assign_[i]};
  }, out);
}

template <typename Acc>
void ScanEngine<Acc>::export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                                   int64_t centers) const {
  const int64_t n = src_.X.rows;
  for (int64_t i = 0; i < n; ++i) {
    m[i] = static_cast<double>(m_[i]);
    m2[i] = static_cast<double>(m2_[i]);
    assign[i] = assign_[i];
    fresh[i] = centers;  // every row is current
  }
}

template <typename Acc>
bool ScanEngine<Acc>::adopt_state(const double* m, const double* m2, const int64_t* assign,
                                  const int64_t* fresh, int64_t centers, const int64_t*) {
  const int64_t n = src_.X.rows;
  for (int64_t i = 0; i < n; ++i)
    if (m[i] >= 0 && fresh[i] < centers) return false;  // a stale row: not this engine's state
  for (int64_t i = 0; i < n; ++i) {
    // the values came from Acc (or are lower bounds rounded down): exact
    m_[i] = static_cast<Acc>(m[i]);
    m2_[i] = static_cast<Acc>(m2[i]);
    assign_[i] = assign[i];
  }
  refresh_top2();
  return true;
}

template <typename Acc>
void ScanEngine<Acc>::refresh_top2() {
  top_ = Top2();
  const int64_t n = src_.X.rows;
  for (int64_t i = 0; i < n; ++i)
    if (m_[i] >= Acc(0)) top_.push(static_cast<double>(m_[i]), i);
}

void exact_d2_rows(const MatrixView& X, const KernelTable& k, const double* norm64,
                   const int64_t* rows, int64_t cnt, const double* ycenter, double* out) {
  const int64_t D = X.cols;
  if (!norm64) {
    const char* ptrs[64];
    for (int64_t b = 0; b < cnt; b += 64) {
      const int64_t c = std::min<int64_t>(64, cnt - b);
      for (int64_t j = 0; j < c; ++j) ptrs[j] = X.row(rows[b + j]);
      k.d2_rows_f64(X.dtype, ptrs, nullptr, c, ycenter, D, out + b);
    }
    return;
  }
  RowSource<double> src;
  src.X = X;
  src.k = &k;
  src.norm64 = norm64;
  std::vector<double> buf(static_cast<size_t>(D));
  for (int64_t j = 0; j < cnt; ++j) {
    src.center64(rows[j], buf.data());
    const char* p = reinterpret_cast<const char*>(buf.data());
    k.d2_rows_f64(DType::f64, &p, nullptr, 1, ycenter, D, out + j);
  }
}

double exact_min_all(const MatrixView& X, const KernelTable& k, const double* norm64,
                     const double* ycenter, const int64_t* centers, int64_t K, int threads) {
  const int64_t D = X.cols;
  double best = std::numeric_limits<double>::infinity();
  const int64_t block = 64;
#pragma omp parallel for num_threads(threads) reduction(min : best) schedule(static) if (K * D > (1 << 20))
  for (int64_t b = 0; b < K; b += block) {
    const int64_t cnt = std::min(block, K - b);
    double out[64];
    exact_d2_rows(X, k, norm64, centers + b, cnt, ycenter, out);
    for (int64_t j = 0; j < cnt; ++j) best = std::min(best, out[j]);
  }
  return best;
}

template class ScanEngine<float>;
template class ScanEngine<double>;

}  // namespace cpu
}  // namespace svp
