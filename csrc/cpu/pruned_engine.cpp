#include "pruned_engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace svp {
namespace cpu {

namespace {

// Relative margin on every float64 bound: float64 distances over D <= 1e5
// terms err by far less than 1e-10 of their value.
constexpr double kRel = 1e-10;

// A float64 lower bound stored in Acc must not round up.
template <typename Acc>
Acc round_down(double v) {
  if (!(v < std::numeric_limits<double>::infinity())) return std::numeric_limits<Acc>::infinity();
  return static_cast<Acc>(v * (1.0 - 4.0 * static_cast<double>(std::numeric_limits<Acc>::epsilon())));
}

}  // namespace

template <typename Acc>
PrunedEngine<Acc>::PrunedEngine(const RowSource<Acc>& src, const CellPartition& cells,
                                int num_threads, double fallback_fraction,
                                std::function<void(int64_t)> poll)
    : src_(src), threads_(num_threads), fallback_fraction_(fallback_fraction) {
  n_ = src.X.rows;
  D_ = src.X.cols;
  n_cells_ = cells.n_cells;
  const int64_t n = n_, D = D_, nc = n_cells_;

  // members grouped by cell
  lo_.assign(static_cast<size_t>(nc + 1), 0);
  for (int64_t i = 0; i < n; ++i) ++lo_[cells.cell_of[i] + 1];
  for (int64_t k = 0; k < nc; ++k) lo_[k + 1] += lo_[k];
  perm_.resize(static_cast<size_t>(n));
  {
    std::vector<int64_t> fill(lo_.begin(), lo_.end() - 1);
    for (int64_t i = 0; i < n; ++i) perm_[fill[cells.cell_of[i]]++] = i;
  }
  poll(0);

  // centroids (float64 means in the working space) and member distances
  centroid_.assign(static_cast<size_t>(nc * D), 0.0);
  radius_.assign(static_cast<size_t>(nc), 0.0);
  p_.resize(static_cast<size_t>(n));
#pragma omp parallel num_threads(threads_)
  {
    std::vector<double> row(static_cast<size_t>(D));
    std::vector<const char*> ptrs(64);
    std::vector<double> sc(64), out(64);
#pragma omp for schedule(dynamic, 4)
    for (int64_t k = 0; k < nc; ++k) {
      const int64_t a = lo_[k], b = lo_[k + 1];
      if (a == b) continue;
      double* mu = centroid_.data() + k * D;
      for (int64_t q = a; q < b; ++q) {
        src_.center64(perm_[q], row.data());
        for (int64_t j = 0; j < D; ++j) mu[j] += row[j];
      }
      const double inv = 1.0 / static_cast<double>(b - a);
      for (int64_t j = 0; j < D; ++j) mu[j] *= inv;
      double r = 0;
      for (int64_t q = a; q < b; q += 64) {
        const int64_t cnt = std::min<int64_t>(64, b - q);
        for (int64_t t = 0; t < cnt; ++t) {
          ptrs[t] = src_.X.row(perm_[q + t]);
          sc[t] = src_.norm64 ? 1.0 / src_.norm64[perm_[q + t]] : 1.0;
        }
        src_.k->d2_rows_f64(src_.X.dtype, ptrs.data(), src_.norm64 ? sc.data() : nullptr, cnt,
                            mu, D, out.data());
        for (int64_t t = 0; t < cnt; ++t) {
          p_[q + t] = std::sqrt(out[t]);
          r = std::max(r, p_[q + t]);
        }
      }
      radius_[k] = r;
      // members by distance to the centroid (ties: row order), for the annulus
      std::vector<int64_t> ord(static_cast<size_t>(b - a));
      std::iota(ord.begin(), ord.end(), a);
      std::stable_sort(ord.begin(), ord.end(),
                       [&](int64_t u, int64_t v) { return p_[u] < p_[v]; });
      std::vector<int64_t> pr(ord.size());
      std::vector<double> pp(ord.size());
      for (size_t t = 0; t < ord.size(); ++t) {
        pr[t] = perm_[ord[t]];
        pp[t] = p_[ord[t]];
      }
      std::copy(pr.begin(), pr.end(), perm_.begin() + a);
      std::copy(pp.begin(), pp.end(), p_.begin() + a);
    }
  }
  poll(0);
  where_.resize(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) where_[perm_[q]] = q;

  m_.assign(static_cast<size_t>(n), std::numeric_limits<Acc>::infinity());
  m2_.assign(static_cast<size_t>(n), std::numeric_limits<Acc>::infinity());
  assign_.assign(static_cast<size_t>(n), -1);
  m2floor_.assign(static_cast<size_t>(nc), std::numeric_limits<double>::infinity());
  dc_.assign(static_cast<size_t>(nc), 0.0);
  ctop_.assign(static_cast<size_t>(nc), Top2());
  for (int64_t k = 0; k < nc; ++k) update_cell_top(k);
  cbuf_.resize(static_cast<size_t>(D));
  cbuf64_.resize(static_cast<size_t>(D));
  live_ = n;
}

template <typename Acc>
void PrunedEngine<Acc>::update_cell_top(int64_t k) {
  Top2 t;
  for (int64_t q = lo_[k]; q < lo_[k + 1]; ++q)
    if (m_[q] >= Acc(0)) t.push(static_cast<double>(m_[q]), perm_[q]);
  ctop_[k] = t;
}

template <typename Acc>
void PrunedEngine<Acc>::exclude(int64_t row) {
  --live_;
  if (scan_) {
    scan_->exclude(row);
    return;
  }
  const int64_t q = where_[row];
  m_[q] = Acc(-1);
  const int64_t k = std::upper_bound(lo_.begin(), lo_.end(), q) - lo_.begin() - 1;
  update_cell_top(k);
}

template <typename Acc>
void PrunedEngine<Acc>::add_centers(const CenterRef* refs, const int64_t* ordinals, int64_t q) {
  if (scan_) {
    scan_->add_centers(refs, ordinals, q);
    return;
  }
  const int64_t before = evals_;
  for (int64_t j = 0; j < q; ++j) {
    src_.center64(refs[j], cbuf64_.data());
    for (int64_t t = 0; t < D_; ++t) cbuf_[t] = static_cast<Acc>(cbuf64_[t]);
    add_one(cbuf_.data(), cbuf64_.data(), ordinals[j]);
  }
  if (q == 1) {
    ++steps_;
    ++window_steps_;
    window_evals_ += evals_ - before;
    window_scan_ += live_;
    maybe_fall_back();
  }
}

template <typename Acc>
void PrunedEngine<Acc>::add_one(const Acc* c, const double* c64, int64_t ordinal) {
  const int64_t nc = n_cells_, D = D_;
  const MatrixView& X = src_.X;
  const D2RowsFn<Acc> d2 = src_.d2();
  const KernelTable& k = *src_.k;
  int64_t evals = 0;
#pragma omp parallel num_threads(threads_) reduction(+ : evals)
  {
    std::vector<const char*> ptrs(64);
    std::vector<double> out64(64);
    std::vector<Acc> sc(64), out(64);
    std::vector<int64_t> pos(64);
    // distances from the center to every centroid, float64
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nc; b += 64) {
      const int64_t cnt = std::min<int64_t>(64, nc - b);
      for (int64_t t = 0; t < cnt; ++t)
        ptrs[t] = reinterpret_cast<const char*>(centroid_.data() + (b + t) * D);
      k.d2_rows_f64(DType::f64, ptrs.data(), nullptr, cnt, c64, D, out64.data());
      for (int64_t t = 0; t < cnt; ++t) dc_[b + t] = std::sqrt(out64[t]);
    }
    // (implicit barrier)
#pragma omp for schedule(dynamic, 8)
    for (int64_t kc = 0; kc < nc; ++kc) {
      const Top2& ct = ctop_[kc];
      if (ct.i1 < 0) continue;  // no live member
      const double cmax = ct.v1;
      const double dc = dc_[kc], r = radius_[kc];
      const double lb_cell = dc * (1 - kRel) - r * (1 + kRel);
      if (lb_cell > 0 && lb_cell * lb_cell >= cmax) {
        m2floor_[kc] = std::min(m2floor_[kc], lb_cell * lb_cell);
        continue;  // no member can get closer
      }
      const int64_t a = lo_[kc], b = lo_[kc + 1];
      int64_t qa = a, qb = b;
      if (cmax < std::numeric_limits<double>::infinity()) {
        // members with p outside [dc - R - slack, dc + R + slack] are at least
        // R = sqrt(cmax) away from c
        const double R = std::sqrt(cmax);
        const double slack = 1e-9 * (dc + R + r);
        const double* pb = p_.data();
        qa = std::lower_bound(pb + a, pb + b, dc - R - slack) - pb;
        qb = std::upper_bound(pb + a, pb + b, dc + R + slack) - pb;
        if (qa > a || qb < b) m2floor_[kc] = std::min(m2floor_[kc], cmax);
      }
      bool changed = false;
      int64_t cnt = 0;
      auto flush = [&]() {
        if (cnt == 0) return;
        d2(X.dtype, ptrs.data(), src_.scale ? sc.data() : nullptr, cnt, c, D, out.data());
        evals += cnt;
        for (int64_t t = 0; t < cnt; ++t) {
          const int64_t qq = pos[t];
          const Acc d = out[t];
          if (d < m_[qq]) {
            m2_[qq] = m_[qq];
            m_[qq] = d;
            assign_[qq] = ordinal;
            changed = true;
          } else if (d < m2_[qq]) {
            m2_[qq] = d;
          }
        }
        cnt = 0;
      };
      for (int64_t qq = qa; qq < qb; ++qq) {
        const Acc mq = m_[qq];
        if (mq < Acc(0)) continue;  // excluded
        const double pq = p_[qq];
        const double lb = std::fabs(dc - pq) - kRel * (dc + pq);
        if (lb > 0 && lb * lb >= static_cast<double>(mq)) {
          const Acc lb2 = round_down<Acc>(lb * lb);
          if (lb2 < m2_[qq]) m2_[qq] = lb2;
          continue;
        }
        const int64_t row = perm_[qq];
        ptrs[cnt] = X.row(row);
        if (src_.scale) sc[cnt] = src_.scale[row];
        pos[cnt] = qq;
        if (++cnt == 64) flush();
      }
      flush();
      if (changed) update_cell_top(kc);
    }
  }
  evals_ += evals;
}

template <typename Acc>
Top2 PrunedEngine<Acc>::top2(const ErrorModel& err) {
  if (scan_) return scan_->top2(err);
  Top2 t;
  for (int64_t k = 0; k < n_cells_; ++k) t.merge(ctop_[k]);
  return t;
}

template <typename Acc>
void PrunedEngine<Acc>::band(double thr, std::vector<BandMember>& out) {
  if (scan_) {
    scan_->band(thr, out);
    return;
  }
  for (int64_t k = 0; k < n_cells_; ++k) {
    if (ctop_[k].i1 < 0 || ctop_[k].v1 < thr) continue;
    for (int64_t q = lo_[k]; q < lo_[k + 1]; ++q) {
      const double v = static_cast<double>(m_[q]);
      if (v >= 0 && v >= thr)
        out.push_back({perm_[q], v, std::min(static_cast<double>(m2_[q]), m2floor_[k]), assign_[q]});
    }
  }
}

template <typename Acc>
int64_t PrunedEngine<Acc>::distance_evals() const {
  return evals_ + (scan_ ? scan_->distance_evals() : 0);
}

template <typename Acc>
double PrunedEngine<Acc>::exact_min(const double* ycenter, double upper, const int64_t* centers,
                                    int64_t K, int threads, int64_t* evals) {
  const int64_t nc = n_cells_, D = D_;
  const KernelTable& k = *src_.k;
  // distance from y to every centroid
  std::vector<double> e(static_cast<size_t>(nc));
  {
    std::vector<const char*> ptrs(64);
    std::vector<double> out(64);
    for (int64_t b = 0; b < nc; b += 64) {
      const int64_t cnt = std::min<int64_t>(64, nc - b);
      for (int64_t t = 0; t < cnt; ++t)
        ptrs[t] = reinterpret_cast<const char*>(centroid_.data() + (b + t) * D);
      k.d2_rows_f64(DType::f64, ptrs.data(), nullptr, cnt, ycenter, D, out.data());
      for (int64_t t = 0; t < cnt; ++t) e[b + t] = std::sqrt(out[t]);
    }
  }
  // centers that the triangle inequality cannot rule out
  std::vector<int64_t> keep;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t q = where_[centers[j]];
    const int64_t kc = std::upper_bound(lo_.begin(), lo_.end(), q) - lo_.begin() - 1;
    const double lb = std::fabs(e[kc] - p_[q]) - kRel * (e[kc] + p_[q]);
    if (lb > 0 && lb * lb > upper * (1 + kRel)) continue;
    keep.push_back(centers[j]);
  }
  *evals += static_cast<int64_t>(keep.size());
  const double best = exact_min_all(src_.X, k, src_.norm64, ycenter, keep.data(),
                                    static_cast<int64_t>(keep.size()), threads);
  return std::min(best, upper);
}

template <typename Acc>
void PrunedEngine<Acc>::maybe_fall_back() {
  const int64_t window = 64;
  if (fallback_fraction_ > 1.0 || window_steps_ < window) return;
  const double frac = window_scan_ > 0 ? static_cast<double>(window_evals_) /
                                             static_cast<double>(window_scan_)
                                       : 0.0;
  window_steps_ = window_evals_ = window_scan_ = 0;
  if (frac > fallback_fraction_) fall_back();
}

template <typename Acc>
void PrunedEngine<Acc>::fall_back() {
  fallback_step_ = steps_;
  scan_.reset(new ScanEngine<Acc>(src_, threads_));
  std::vector<Acc>& m = scan_->m();
  std::vector<Acc>& m2 = scan_->m2();
  std::vector<int64_t>& as = scan_->assign();
  for (int64_t k = 0; k < n_cells_; ++k) {
    for (int64_t q = lo_[k]; q < lo_[k + 1]; ++q) {
      const int64_t row = perm_[q];
      m[row] = m_[q];
      m2[row] = std::min(m2_[q], round_down<Acc>(m2floor_[k]));
      as[row] = assign_[q];
    }
  }
  scan_->refresh_top2();
  // the per-point state now lives in the scan; keep the geometry for exact_min
  std::vector<Acc>().swap(m_);
  std::vector<Acc>().swap(m2_);
  std::vector<int64_t>().swap(assign_);
}

template class PrunedEngine<float>;
template class PrunedEngine<double>;

}  // namespace cpu
}  // namespace svp
