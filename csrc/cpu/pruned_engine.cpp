#include "pruned_engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

namespace svp {
namespace cpu {

namespace {

// Relative margin on every float64 bound: float64 distances over D <= 1e5
// terms err by far less than 1e-10 of their value.
constexpr double kRel = 1e-10;

// A float64 lower bound stored in Acc must not round up: scaled down by a few
// Acc ulps first.
template <typename Acc>
constexpr double kRoundDown = 1.0 - 4.0 * static_cast<double>(std::numeric_limits<Acc>::epsilon());

template <typename Acc>
Acc round_down(double v) {
  if (!(v < std::numeric_limits<double>::infinity())) return std::numeric_limits<Acc>::infinity();
  return static_cast<Acc>(v * kRoundDown<Acc>);
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
  cellpos_.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < nc; ++k)
    for (int64_t q = lo_[k]; q < lo_[k + 1]; ++q) cellpos_[q] = static_cast<int32_t>(k);
  cell_centers_.assign(static_cast<size_t>(nc), {});
  changed_.assign(static_cast<size_t>(nc), 0);
  // centroid-to-centroid distances: a center c in cell a is at least
  // cc(a, k) - p(c) from centroid k, which rules most cells out without
  // computing ||c - mu_k|| (kept for up to 2048 cells: 32 MB)
  if (nc <= 2048 && nc > 1) {
    cc_.assign(static_cast<size_t>(nc * nc), 0.0);
#pragma omp parallel num_threads(threads_)
    {
      std::vector<const char*> ptrs(64);
      std::vector<double> out(64);
#pragma omp for schedule(dynamic, 8)
      for (int64_t a = 0; a < nc; ++a) {
        for (int64_t b = 0; b < nc; b += 64) {
          const int64_t cnt = std::min<int64_t>(64, nc - b);
          for (int64_t t = 0; t < cnt; ++t)
            ptrs[t] = reinterpret_cast<const char*>(centroid_.data() + (b + t) * D);
          src_.k->d2_rows_f64(DType::f64, ptrs.data(), nullptr, cnt, centroid_.data() + a * D, D,
                              out.data());
          for (int64_t t = 0; t < cnt; ++t) cc_[a * nc + b + t] = std::sqrt(out[t]);
        }
      }
    }
  }

  m_.assign(static_cast<size_t>(n), std::numeric_limits<Acc>::infinity());
  m2_.assign(static_cast<size_t>(n), std::numeric_limits<Acc>::infinity());
  assign_.assign(static_cast<size_t>(n), -1);
  m2floor_.assign(static_cast<size_t>(nc), std::numeric_limits<double>::infinity());
  dc_.assign(static_cast<size_t>(nc), 0.0);
  centroid_ptrs_.resize(static_cast<size_t>(nc));
  for (int64_t k = 0; k < nc; ++k)
    centroid_ptrs_[k] = reinterpret_cast<const char*>(centroid_.data() + k * D);
  ctop_.assign(static_cast<size_t>(nc), Top2());
  while (leaves_ < nc) leaves_ *= 2;
  tree_.assign(static_cast<size_t>(2 * leaves_), Top2());
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
  tree_update(k);
}

template <typename Acc>
void PrunedEngine<Acc>::tree_update(int64_t k) {
  int64_t node = leaves_ + k;
  tree_[node] = ctop_[k];
  for (node /= 2; node >= 1; node /= 2) {
    Top2 t = tree_[2 * node];
    t.merge(tree_[2 * node + 1]);
    tree_[node] = t;
  }
}

template <typename Acc>
void PrunedEngine<Acc>::exclude(int64_t row) {
  --live_;
  if (fallback_) {
    fallback_->exclude(row);
    return;
  }
  const int64_t q = where_[row];
  m_[q] = Acc(-1);
  update_cell_top(cellpos_[q]);
}

template <typename Acc>
void PrunedEngine<Acc>::add_centers(const CenterRef* refs, const int64_t* ordinals, int64_t q) {
  for (int64_t j = 0; j < q; ++j) {  // centers by cell, for exact_min
    ++n_centers_;
    if (refs[j].row >= 0) {
      cell_centers_[cellpos_[where_[refs[j].row]]].push_back(refs[j].row);
      ++n_local_centers_;
    }
  }
  if (fallback_) {
    fallback_->add_centers(refs, ordinals, q);
    return;
  }
  const int64_t before = evals_;
  if (q > 1) {
    add_batch(refs, ordinals, q);
  } else {
    for (int64_t j = 0; j < q; ++j) {
      src_.center64(refs[j], cbuf64_.data());
      for (int64_t t = 0; t < D_; ++t) cbuf_[t] = static_cast<Acc>(cbuf64_[t]);
      add_one(refs[j], cbuf_.data(), cbuf64_.data(), ordinals[j]);
    }
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
int64_t PrunedEngine<Acc>::scan_cell(int64_t kc, int64_t qa, int64_t qb, double dc, const Acc* c,
                                     int64_t ordinal, const char** ptrs, Acc* sc, Acc* out,
                                     int64_t* pos) {
  const MatrixView& X = src_.X;
  const D2RowsFn<Acc> d2 = src_.d2();
  // Values only decrease: the cell's best two change only if one of them does.
  const int64_t top_a = ctop_[kc].i1, top_b = ctop_[kc].i2;
  bool changed = false;
  int64_t cnt = 0, evals = 0;
  auto flush = [&]() {
    if (cnt == 0) return;
    for (int64_t t = 0; t < cnt; ++t) {
      const int64_t row = perm_[pos[t]];
      ptrs[t] = X.row(row);
      if (src_.scale) sc[t] = src_.scale[row];
    }
    d2(X.dtype, ptrs, src_.scale ? sc : nullptr, cnt, c, D_, out);
    evals += cnt;
    for (int64_t t = 0; t < cnt; ++t) {
      const int64_t qq = pos[t];
      if (take_center_distance(out[t], ordinal, m_[qq], m2_[qq], assign_[qq])) {
        const int64_t row = perm_[qq];
        changed = changed || row == top_a || row == top_b;
      }
    }
    cnt = 0;
  };
  // The annulus test per member (float32 state: a vector kernel), in blocks
  // of 64 members appended to pos; a member the bound rules out keeps it as a
  // lower bound on its second distance (m2). pos holds up to 128: flush past 64.
  if constexpr (std::is_same<Acc, float>::value) {
    const AnnulusFn annulus = src_.k->annulus;
    for (int64_t q0 = qa; q0 < qb; q0 += 64) {
      const int64_t len = std::min<int64_t>(64, qb - q0);
      cnt += annulus(m_.data() + q0, p_.data() + q0, len, dc, kRel, kRoundDown<float>, q0,
                     m2_.data() + q0, pos + cnt);
      if (cnt >= 64) flush();
    }
  } else {
    for (int64_t qq = qa; qq < qb; ++qq) {
      const Acc mq = m_[qq];
      const double pq = p_[qq];
      const double lb = std::fabs(dc - pq) - kRel * (dc + pq);
      const double lb2 = lb * lb;
      const bool live = mq >= Acc(0);  // excluded members hold -1
      const bool ruled_out = (lb > 0) & (lb2 >= static_cast<double>(mq));
      const Acc l2 = round_down<Acc>(lb2);
      if (live & ruled_out & (l2 < m2_[qq])) m2_[qq] = l2;
      pos[cnt] = qq;
      cnt += static_cast<int64_t>(live & !ruled_out);
      if (cnt == 64) flush();
    }
  }
  flush();
  if (changed) {  // the cell's best two; the tree is updated serially by the caller
    Top2 t;
    for (int64_t q = lo_[kc]; q < lo_[kc + 1]; ++q)
      if (m_[q] >= Acc(0)) t.push(static_cast<double>(m_[q]), perm_[q]);
    ctop_[kc] = t;
    changed_[kc] = 1;
  }
  return evals;
}

template <typename Acc>
void PrunedEngine<Acc>::add_one(const CenterRef& ref, const Acc* c, const double* c64,
                                int64_t ordinal) {
  const int64_t nc = n_cells_, D = D_;
  const KernelTable& k = *src_.k;
  // cheap bound from the center's own cell, when it is one of our points
  const double* ccrow = nullptr;
  double pc = 0;
  if (!cc_.empty() && ref.row >= 0) {
    const int64_t q = where_[ref.row];
    ccrow = cc_.data() + static_cast<int64_t>(cellpos_[q]) * nc;
    pc = p_[q];
  }
  // pass 1 (serial, cheap): which cells can change, and which of their members
  struct Work {
    int64_t cell, qa, qb;
    double dc;
  };
  std::vector<Work> work;
  int64_t candidates = 0;
  // the center's squared distance to every centroid in one kernel call: four
  // rows at a time, where one call per cell cost more than its arithmetic
  k.d2_rows_f64(DType::f64, centroid_ptrs_.data(), nullptr, nc, c64, D, dc_.data());
  for (int64_t kc = 0; kc < nc; ++kc) {
    const Top2& ct = ctop_[kc];
    if (ct.i1 < 0) continue;  // no live member
    const double cmax = ct.v1;
    const bool finite = cmax < std::numeric_limits<double>::infinity();
    const double R = finite ? std::sqrt(cmax) : 0.0;
    const double r = radius_[kc];
    if (ccrow && finite) {
      const double lb = (ccrow[kc] - pc) * (1 - kRel) - r * (1 + kRel);
      if (lb > 0 && lb * lb >= cmax) {
        m2floor_[kc] = std::min(m2floor_[kc], lb * lb);
        continue;
      }
    }
    const double dc = std::sqrt(dc_[kc]);
    const double lb_cell = dc * (1 - kRel) - r * (1 + kRel);
    if (lb_cell > 0 && lb_cell * lb_cell >= cmax) {
      m2floor_[kc] = std::min(m2floor_[kc], lb_cell * lb_cell);
      continue;  // no member can get closer
    }
    const int64_t a = lo_[kc], b = lo_[kc + 1];
    int64_t qa = a, qb = b;
    if (finite) {
      // members with p outside [dc - R - slack, dc + R + slack] are at least
      // R = sqrt(cmax) away from c
      const double slack = 1e-9 * (dc + R + r);
      const double* pb = p_.data();
      qa = std::lower_bound(pb + a, pb + b, dc - R - slack) - pb;
      qb = std::upper_bound(pb + a, pb + b, dc + R + slack) - pb;
      if (qa > a || qb < b) m2floor_[kc] = std::min(m2floor_[kc], cmax);
    }
    if (qa < qb) {
      work.push_back({kc, qa, qb, dc});
      candidates += qb - qa;
    }
  }
  // pass 2: scan the candidate members (threads only when there is enough work)
  int64_t evals = 0;
  const int64_t nw = static_cast<int64_t>(work.size());
  // two threads pay from about 8k element-distances on (Fashion-MNIST features:
  // 0.45 s against 0.49 s at 64k)
  const bool parallel = threads_ > 1 && candidates * D >= 8192 && nw > 1;
#pragma omp parallel num_threads(threads_) reduction(+ : evals) if (parallel)
  {
    const char* ptrs[128];  // scan_cell flushes past 64 candidates: room for 127
    Acc sc[128], out[128];
    int64_t pos[128];
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < nw; ++w) {
      const Work& wk = work[w];
      evals += scan_cell(wk.cell, wk.qa, wk.qb, wk.dc, c, ordinal, ptrs, sc, out, pos);
    }
  }
  for (const Work& wk : work) {
    if (changed_[wk.cell]) {
      changed_[wk.cell] = 0;
      tree_update(wk.cell);
    }
  }
  evals_ += evals;
}

template <typename Acc>
void PrunedEngine<Acc>::add_batch(const CenterRef* refs, const int64_t* ordinals, int64_t q) {
  const int64_t nc = n_cells_, D = D_;
  const KernelTable& k = *src_.k;
  const MatrixView& X = src_.X;
  const D2RowsFn<Acc> d2 = src_.d2();
  std::vector<double> c64(static_cast<size_t>(q * D));
  std::vector<Acc> cacc(static_cast<size_t>(q * D));
  for (int64_t j = 0; j < q; ++j) {
    src_.center64(refs[j], c64.data() + j * D);
    for (int64_t t = 0; t < D; ++t) cacc[j * D + t] = static_cast<Acc>(c64[j * D + t]);
  }
  int64_t evals = 0;
#pragma omp parallel num_threads(threads_) reduction(+ : evals)
  {
    const char* ptrs[64];
    Acc sc[64], out[64];
    std::vector<double> dc(static_cast<size_t>(q));
    std::vector<char> on(static_cast<size_t>(q));
#pragma omp for schedule(dynamic, 4)
    for (int64_t kc = 0; kc < nc; ++kc) {
      if (ctop_[kc].i1 < 0) continue;
      const double cmax = ctop_[kc].v1, r = radius_[kc];
      const char* mu = reinterpret_cast<const char*>(centroid_.data() + kc * D);
      bool any = false;
      for (int64_t j = 0; j < q; ++j) {
        double d2c;
        k.d2_rows_f64(DType::f64, &mu, nullptr, 1, c64.data() + j * D, D, &d2c);
        dc[j] = std::sqrt(d2c);
        const double lb = dc[j] * (1 - kRel) - r * (1 + kRel);
        on[j] = !(lb > 0 && lb * lb >= cmax);
        if (!on[j]) m2floor_[kc] = std::min(m2floor_[kc], lb * lb);
        any = any || on[j];
      }
      if (!any) continue;
      bool changed = false;
      for (int64_t qa = lo_[kc]; qa < lo_[kc + 1]; qa += 64) {
        const int64_t qb = std::min(lo_[kc + 1], qa + 64);
        int64_t cnt = 0;
        int64_t pos[64];
        for (int64_t qq = qa; qq < qb; ++qq) {
          if (m_[qq] < Acc(0)) continue;
          const int64_t row = perm_[qq];
          ptrs[cnt] = X.row(row);
          if (src_.scale) sc[cnt] = src_.scale[row];
          pos[cnt++] = qq;
        }
        if (cnt == 0) continue;
        for (int64_t j = 0; j < q; ++j) {
          if (!on[j]) continue;
          d2(X.dtype, ptrs, src_.scale ? sc : nullptr, cnt, cacc.data() + j * D, D, out);
          evals += cnt;
          for (int64_t t = 0; t < cnt; ++t) {
            const int64_t qq = pos[t];
            if (take_center_distance(out[t], ordinals[j], m_[qq], m2_[qq], assign_[qq])) {
              const int64_t row = perm_[qq];
              changed = changed || row == ctop_[kc].i1 || row == ctop_[kc].i2;
            }
          }
        }
      }
      if (changed) {
        Top2 t;
        for (int64_t qq = lo_[kc]; qq < lo_[kc + 1]; ++qq)
          if (m_[qq] >= Acc(0)) t.push(static_cast<double>(m_[qq]), perm_[qq]);
        ctop_[kc] = t;
        changed_[kc] = 1;
      }
    }
  }
  for (int64_t kc = 0; kc < nc; ++kc) {
    if (changed_[kc]) {
      changed_[kc] = 0;
      tree_update(kc);
    }
  }
  evals_ += evals;
}

template <typename Acc>
Top2 PrunedEngine<Acc>::top2(const ErrorModel& err) {
  if (fallback_) return fallback_->top2(err);
  return tree_[1];
}

template <typename Acc>
void PrunedEngine<Acc>::band(double thr, std::vector<BandMember>& out) {
  if (fallback_) {
    fallback_->band(thr, out);
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
  return evals_ + (fallback_ ? fallback_->distance_evals() : 0);
}

template <typename Acc>
double PrunedEngine<Acc>::exact_min(const double* ycenter, double upper, const int64_t* centers,
                                    int64_t K, int threads, int64_t* evals) {
  if (K != n_centers_ || n_local_centers_ != n_centers_)  // not our list: no shortcut
    return Engine<Acc>::exact_min(ycenter, upper, centers, K, threads, evals);
  const int64_t nc = n_cells_, D = D_;
  const KernelTable& k = *src_.k;
  std::vector<int64_t> keep;
  for (int64_t kc = 0; kc < nc; ++kc) {
    const std::vector<int64_t>& cs = cell_centers_[kc];
    if (cs.empty()) continue;
    double d2c;
    const char* mu = reinterpret_cast<const char*>(centroid_.data() + kc * D);
    k.d2_rows_f64(DType::f64, &mu, nullptr, 1, ycenter, D, &d2c);
    const double e = std::sqrt(d2c);
    // every center of this cell is at least e - r from y
    const double lb_cell = e * (1 - kRel) - radius_[kc] * (1 + kRel);
    if (lb_cell > 0 && lb_cell * lb_cell > upper * (1 + kRel)) continue;
    for (int64_t row : cs) {
      const double pq = p_[where_[row]];
      const double lb = std::fabs(e - pq) - kRel * (e + pq);
      if (lb > 0 && lb * lb > upper * (1 + kRel)) continue;
      keep.push_back(row);
    }
  }
  *evals += static_cast<int64_t>(keep.size());
  const double best = exact_min_all(src_.X, k, src_.norm64, ycenter, keep.data(),
                                    static_cast<int64_t>(keep.size()), threads);
  return std::min(best, upper);
}

template <typename Acc>
void PrunedEngine<Acc>::maybe_fall_back() {
  // Windows of 64 steps. Nothing pruned in a window: fall back at once. Past
  // the first 256 steps (cells prune little while the radius is still large),
  // fall back when a window evaluates more than fallback_fraction of a scan.
  const int64_t window = 64;
  if (fallback_fraction_ > 1.0 || window_steps_ < window) return;
  const double frac = window_scan_ > 0 ? static_cast<double>(window_evals_) /
                                             static_cast<double>(window_scan_)
                                       : 0.0;
  window_steps_ = window_evals_ = window_scan_ = 0;
  if (frac >= 0.95 || (steps_ >= 256 && frac > fallback_fraction_)) fall_back();
}

template <typename Acc>
void PrunedEngine<Acc>::fall_back() {
  fallback_step_ = steps_;
  std::vector<Acc> m(static_cast<size_t>(n_)), m2(static_cast<size_t>(n_));
  std::vector<int64_t> as(static_cast<size_t>(n_));
  for (int64_t k = 0; k < n_cells_; ++k) {
    for (int64_t q = lo_[k]; q < lo_[k + 1]; ++q) {
      const int64_t row = perm_[q];
      m[row] = m_[q];
      m2[row] = std::min(m2_[q], round_down<Acc>(m2floor_[k]));
      as[row] = assign_[q];
    }
  }
  fallback_.reset(new LazyEngine<Acc>(src_, threads_));
  fallback_->adopt(std::move(m), std::move(m2), std::move(as), n_centers_, evals_);
  evals_ = 0;  // counted by the lazy engine from now on
  // the per-point state now lives there; keep the geometry for exact_min
  std::vector<Acc>().swap(m_);
  std::vector<Acc>().swap(m2_);
  std::vector<int64_t>().swap(assign_);
}

template class PrunedEngine<float>;
template class PrunedEngine<double>;

}  // namespace cpu
}  // namespace svp
