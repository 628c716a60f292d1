#include "pruned_engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>

namespace svp {
namespace cpu {

namespace {

// Members per distance-kernel call.
constexpr int64_t kBlock = 64;

// Relative margin on every float64 bound: float64 distances over D <= 1e5
// terms err by far less than 1e-10 of their value.
constexpr double kRel = 1e-10;

// A float64 lower bound stored in Acc must not round up: scaled down by a few
// Acc ulps first.
template <typename Acc>
constexpr double kRoundDown = 1.0 - 4.0 * static_cast<double>(std::numeric_limits<Acc>::epsilon());

// The members [qa, qb) of a cell whose sorted p lie in [lo, hi]: two
// branch-free binary searches in one loop, so that their loads overlap.
inline void annulus_range(const double* p, int64_t n, double lo, double hi, int64_t* qa,
                          int64_t* qb) {
  if (n == 0) {
    *qa = *qb = 0;
    return;
  }
  const double* bl = p;  // the answer for lo lies in [bl, bl + n]
  const double* bh = p;  // and for hi in [bh, bh + n]
  while (n > 1) {
    const int64_t half = n / 2;
    bl = bl[half - 1] < lo ? bl + half : bl;
    bh = bh[half - 1] <= hi ? bh + half : bh;
    n -= half;
  }
  *qa = (bl - p) + static_cast<int64_t>(*bl < lo);
  *qb = (bh - p) + static_cast<int64_t>(*bh <= hi);
}

// The bound from the center's own cell over all cells: cell k cannot change
// when lb = (cc[k] - pc) - r[k] (with margins) is positive and lb^2 >= cmax[k].
// keep[k]: the cell is live and not ruled out; a ruled-out live cell's floor
// takes lb^2. Branch-free vector code, compiled for AVX-512, AVX2 and the
// baseline (chosen at load time; each skip is safe in every version, the
// margins dwarf any rounding or contraction).
__attribute__((target_clones("avx512f", "avx2", "default"))) void centroid_bound_pass(
    const double* cc, double pc, const double* radius, const double* cmax, double* floor,
    char* keep, int64_t nc) {
  for (int64_t kc = 0; kc < nc; ++kc) {
    const double cm = cmax[kc];  // < 0: no live member; +inf: no center yet
    const double lb = (cc[kc] - pc) * (1 - kRel) - radius[kc] * (1 + kRel);
    const double lb2 = lb * lb;
    const bool live = cm >= 0;
    const bool ruled = (lb > 0) & (lb2 >= cm);
    const double f = floor[kc];
    floor[kc] = (live & ruled & (lb2 < f)) ? lb2 : f;
    keep[kc] = static_cast<char>(live & !ruled);
  }
}

// Squared float32 distances between the projected members proj[cand[t]]
// (k floats each) and pc, for the projection bound: sixteen lanes per member
// (one AVX-512 vector, two AVX2), so that the compiler vectorizes without
// reordering any lane's sum. Compiled for AVX-512, AVX2 and the baseline.
// Each result errs by at most (k + 2) float32 ulps of its value (the caller's
// margin), or is +inf on overflow.
__attribute__((target_clones("avx512f", "avx2", "default"))) void projected_d2(
    const float* proj, int64_t k, const float* pc, const int64_t* cand, int64_t cnt, float* out) {
  constexpr int kLanes = 16;
  for (int64_t t = 0; t < cnt; ++t) {
    const float* px = proj + cand[t] * k;
    float s[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= k; j += kLanes)
      for (int u = 0; u < kLanes; ++u) {
        const float d = px[j + u] - pc[j + u];
        s[u] += d * d;
      }
    for (int u = 0; j + u < k; ++u) {
      const float d = px[j + u] - pc[j + u];
      s[u] += d * d;
    }
    for (int w = kLanes / 2; w > 0; w /= 2)
      for (int u = 0; u < w; ++u) s[u] += s[u + w];
    out[t] = s[0];
  }
}

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
  pivot_.assign(static_cast<size_t>(nc * kPivots * D), 0.0);
  q_.resize(static_cast<size_t>(kPivots * n));
#pragma omp parallel num_threads(threads_)
  {
    std::vector<double> row(static_cast<size_t>(D));
    std::vector<const char*> ptrs(64);
    std::vector<double> sc(64), out(64);
    // float64 distances of members [a, b) (in perm_ order) to ref, into dist
    auto distances_to = [&](const double* ref, int64_t a, int64_t b, double* dist) {
      for (int64_t q = a; q < b; q += 64) {
        const int64_t cnt = std::min<int64_t>(64, b - q);
        for (int64_t t = 0; t < cnt; ++t) {
          ptrs[t] = src_.X.row(perm_[q + t]);
          sc[t] = src_.norm64 ? 1.0 / src_.norm64[perm_[q + t]] : 1.0;
        }
        src_.k->d2_rows_f64(src_.X.dtype, ptrs.data(), src_.norm64 ? sc.data() : nullptr, cnt,
                            ref, D, out.data());
        for (int64_t t = 0; t < cnt; ++t) dist[q + t] = std::sqrt(out[t]);
      }
    };
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
      distances_to(mu, a, b, p_.data());
      radius_[k] = *std::max_element(p_.begin() + a, p_.begin() + b);
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
      // the pivots: the member farthest from the centroid, then the member
      // farthest from that one; every member's distance to each (two more
      // annuli, across the first)
      int64_t far = b - 1;
      for (int j = 0; j < kPivots; ++j) {
        double* pv = pivot_.data() + (k * kPivots + j) * D;
        double* qj = q_.data() + j * n;
        src_.center64(perm_[far], pv);
        distances_to(pv, a, b, qj);
        far = std::max_element(qj + a, qj + b) - qj;
      }
    }
  }
  poll(0);
  where_.resize(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) where_[perm_[q]] = q;
  // The rows in cell order, when the copy is small: a step's candidates then
  // lie in a few contiguous runs, where gathering them from the caller's
  // order missed the cache.
  row_bytes_ = D * static_cast<int64_t>(dtype_size(src_.X.dtype));
  if (n * row_bytes_ <= cells.copy_max_bytes) {
    rows_.resize(static_cast<size_t>(n * row_bytes_));
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t q = 0; q < n; ++q)
      std::memcpy(rows_.data() + q * row_bytes_, src_.X.row(perm_[q]),
                  static_cast<size_t>(row_bytes_));
  }
  if (src_.scale) {
    scale_.resize(static_cast<size_t>(n));
    for (int64_t q = 0; q < n; ++q) scale_[q] = src_.scale[perm_[q]];
  }
  if (cells.proj_dims > 0) {  // the projection in cell order, next to the rows
    const int64_t k = proj_dims_ = cells.proj_dims;
    proj_scale_ = cells.proj_scale;
    proj_.resize(static_cast<size_t>(n * k));
    proj_err_.resize(static_cast<size_t>(n));
    rlo_.resize(static_cast<size_t>(n));
    rhi_.resize(static_cast<size_t>(n));
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t q = 0; q < n; ++q) {
      const int64_t row = perm_[q];
      std::memcpy(proj_.data() + q * k, cells.proj + row * k, static_cast<size_t>(k) * sizeof(float));
      proj_err_[q] = cells.proj_err[row];
      rlo_[q] = cells.resid_lo[row];
      rhi_[q] = cells.resid_hi[row];
    }
    // V(centroid - mu) per cell, in float64: off by at most sqrt(k) gamma_D
    // ||centroid - mu|| (the product; V's rows have norm <= 1) plus the
    // subtraction's rounding
    const double* V = cells.proj_directions;
    const double* mu = cells.proj_shift;
    cproj_.assign(static_cast<size_t>(nc * k), 0.0);
    cproj_err_.assign(static_cast<size_t>(nc), 0.0);
    const double u64 = std::numeric_limits<double>::epsilon() / 2;
    const double gamma = static_cast<double>(D) * u64 / (1 - static_cast<double>(D) * u64);
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t kc = 0; kc < nc; ++kc) {
      std::vector<double> y(static_cast<size_t>(D));
      const double* cen = centroid_.data() + kc * D;
      double y2 = 0;
      for (int64_t j = 0; j < D; ++j) {
        y[j] = cen[j] - mu[j];
        y2 += y[j] * y[j];
      }
      for (int64_t i = 0; i < k; ++i) {
        double dot = 0;
        for (int64_t j = 0; j < D; ++j) dot += V[i * D + j] * y[j];
        cproj_[kc * k + i] = dot;
      }
      cproj_err_[kc] = (std::sqrt(static_cast<double>(k)) * gamma + 4 * u64) *
                           std::sqrt(y2) * (1 + 1e-6) + 1e-300;
    }
    // A test reads k floats and three doubles; a member it rules out saves a
    // row's read and its distance. Twice the break-even fraction, for the
    // arithmetic and the branch.
    proj_break_even_ = std::min(
        0.9, 2.0 * static_cast<double>(k * 4 + 24) / static_cast<double>(std::max<int64_t>(row_bytes_, 1)));
  }
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
  dc_.assign(static_cast<size_t>(nc * kPivots), 0.0);
  centroid_ptrs_.resize(static_cast<size_t>(nc));
  pivot_ptrs_.resize(static_cast<size_t>(nc * kPivots));
  for (int64_t k = 0; k < nc; ++k)
    centroid_ptrs_[k] = reinterpret_cast<const char*>(centroid_.data() + k * D);
  for (int64_t j = 0; j < nc * kPivots; ++j)
    pivot_ptrs_[j] = reinterpret_cast<const char*>(pivot_.data() + j * D);
  ctop_.assign(static_cast<size_t>(nc), Top2());
  cmax_.assign(static_cast<size_t>(nc), -1.0);
  surv_.resize(static_cast<size_t>(nc));
  work_.reserve(static_cast<size_t>(nc));
  cand_.resize(static_cast<size_t>(n));
  moved_.resize(static_cast<size_t>(n));
  is_top_.assign(static_cast<size_t>(n), 0);
  keep_.resize(static_cast<size_t>(nc));
  sptrs_.resize(static_cast<size_t>(nc * kPivots));
  while (leaves_ < nc) leaves_ *= 2;
  tree_.assign(static_cast<size_t>(2 * leaves_), Top2());
  for (int64_t k = 0; k < nc; ++k) update_cell_top(k);
  cbuf_.resize(static_cast<size_t>(D));
  cbuf64_.resize(static_cast<size_t>(D));
  live_ = n;
}

template <typename Acc>
Top2 PrunedEngine<Acc>::cell_top(int64_t k) const {
  const int64_t a = lo_[k], b = lo_[k + 1];
  Top2 t;
  if constexpr (std::is_same<Acc, float>::value) {
    // the two largest values by a vector pass, then only the members holding
    // one of them compete under the tie rule (a Top2 per member was 10% of a
    // selection on proxy features: every pick recomputes its cell)
    float v[2];
    src_.k->max2(m_.data() + a, b - a, v);
    if (v[0] < 0.0f) return t;
    for (int64_t q = a; q < b; ++q) {
      const float mq = m_[q];
      if (mq >= 0.0f && (mq == v[0] || mq == v[1])) t.push(static_cast<double>(mq), perm_[q]);
    }
  } else {
    for (int64_t q = a; q < b; ++q)
      if (m_[q] >= Acc(0)) t.push(static_cast<double>(m_[q]), perm_[q]);
  }
  return t;
}

template <typename Acc>
void PrunedEngine<Acc>::set_cell_top(int64_t k, const Top2& t) {
  for (int64_t row : {ctop_[k].i1, ctop_[k].i2})
    if (row >= 0) is_top_[where_[row]] = 0;
  ctop_[k] = t;
  for (int64_t row : {t.i1, t.i2})
    if (row >= 0) is_top_[where_[row]] = 1;
}

template <typename Acc>
void PrunedEngine<Acc>::update_cell_top(int64_t k) {
  set_cell_top(k, cell_top(k));
  tree_update(k);
}

template <typename Acc>
void PrunedEngine<Acc>::tree_update(int64_t k) {
  cmax_[k] = ctop_[k].i1 >= 0 ? ctop_[k].v1 : -1.0;
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
      const int64_t pos = where_[refs[j].row];
      cell_centers_[cellpos_[pos]].push_back({p_[pos], refs[j].row});
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
int64_t PrunedEngine<Acc>::annulus_members(const Work& wk, int64_t* keep, bool pivots) {
  static_assert(kPivots == 2, "the annulus kernel takes two pivots");
  const int64_t qa = wk.qa, qb = wk.qb, n = n_;
  const double dc = wk.dc, dq0 = wk.dq[0], dq1 = wk.dq[1];
  const double* q0 = q_.data();
  const double* q1 = q_.data() + n;
  // A member the bound rules out keeps it as a lower bound on its second
  // distance (m2).
  if (!pivots) {  // the centroid's annulus alone (the projection bound follows)
    int64_t cnt = 0;
    const double* pp = p_.data();
    Acc* m2 = m2_.data();
    for (int64_t qq = qa; qq < qb; ++qq) {
      const Acc mq = m_[qq];
      const double lb = std::fabs(dc - pp[qq]) - kRel * (dc + pp[qq]);
      const double lb2 = lb * lb;
      const bool live = mq >= Acc(0);  // excluded members hold -1
      const bool ruled_out = (lb > 0) & (lb2 >= static_cast<double>(mq));
      if (live & ruled_out) {  // lb2 is finite here (mq is)
        const Acc l2 = static_cast<Acc>(lb2 * kRoundDown<Acc>);
        if (l2 < m2[qq]) m2[qq] = l2;
      }
      keep[cnt] = qq;
      cnt += static_cast<int64_t>(live & !ruled_out);
    }
    return cnt;
  }
  if constexpr (std::is_same<Acc, float>::value) {  // float32 state: a vector kernel
    return src_.k->annulus(m_.data() + qa, p_.data() + qa, q0 + qa, q1 + qa, qb - qa, dc, dq0,
                           dq1, kRel, kRoundDown<float>, qa, m2_.data() + qa, keep);
  } else {
    int64_t cnt = 0;
    for (int64_t qq = qa; qq < qb; ++qq) {
      const Acc mq = m_[qq];
      const double pq = p_[qq];
      const double lb = std::max(std::fabs(dc - pq) - kRel * (dc + pq),
                                 std::max(std::fabs(dq0 - q0[qq]) - kRel * (dq0 + q0[qq]),
                                          std::fabs(dq1 - q1[qq]) - kRel * (dq1 + q1[qq])));
      const double lb2 = lb * lb;
      const bool live = mq >= Acc(0);  // excluded members hold -1
      const bool ruled_out = (lb > 0) & (lb2 >= static_cast<double>(mq));
      const Acc l2 = round_down<Acc>(lb2);
      if (live & ruled_out & (l2 < m2_[qq])) m2_[qq] = l2;
      keep[cnt] = qq;
      cnt += static_cast<int64_t>(live & !ruled_out);
    }
    return cnt;
  }
}

template <typename Acc>
int64_t PrunedEngine<Acc>::projection_members(int64_t qc, int64_t* cand, int64_t cnt) {
  const int64_t k = proj_dims_;
  const float* pc = proj_.data() + qc * k;
  const double ec = proj_err_[qc], rloc = rlo_[qc], rhic = rhi_[qc];
  // projected_d2's float32 error is at most (k + 2) ulps of its value (and
  // half a subnormal ulp per operation below 2^-126); the float64 steps here
  // add a few float64 ulps, under kRel64
  const double rel32 = static_cast<double>(k + 4) * 0x1p-23;
  constexpr double kRel64 = 1e-12;
  constexpr int64_t kChunk = 256;
  float s2[kChunk];
  int64_t out = 0;
  for (int64_t t0 = 0; t0 < cnt; t0 += kChunk) {
    const int64_t c = std::min(kChunk, cnt - t0);
    projected_d2(proj_.data(), k, pc, cand + t0, c, s2);
    for (int64_t t = 0; t < c; ++t) {
      const int64_t q = cand[t0 + t];
      // ||V(x - c)|| less both stored errors bounds ||Pi(x - c)|| from
      // below; the residual norms' gap bounds ||(I - Pi)(x - c)||
      const double sq = static_cast<double>(s2[t]) * (1 - rel32) - 1e-40;
      const double a =
          std::sqrt(sq > 0 ? sq : 0.0) * proj_scale_ * (1 - kRel64) - proj_err_[q] - ec;
      const double b = std::max(rlo_[q] - rhic, rloc - rhi_[q]);
      const double lb2 = ((a > 0 ? a * a : 0.0) + (b > 0 ? b * b : 0.0)) * (1 - kRel64);
      // (an overflowed square gives +inf: no bound)
      const bool ruled = (lb2 > 0) & (lb2 < std::numeric_limits<double>::infinity()) &
                         (lb2 >= static_cast<double>(m_[q]));
      if (ruled) {
        const Acc l2 = round_down<Acc>(lb2);
        if (l2 < m2_[q]) m2_[q] = l2;
      }
      cand[out] = q;
      out += static_cast<int64_t>(!ruled);
    }
  }
  return out;
}

template <typename Acc>
int64_t PrunedEngine<Acc>::projection_cells(int64_t qc, int64_t* surv, int64_t ns) {
  const int64_t k = proj_dims_;
  const float* pcf = proj_.data() + qc * k;
  double pc[4096];  // the center's coordinates in the data's units (exact: a power of two)
  for (int64_t j = 0; j < k; ++j) pc[j] = static_cast<double>(pcf[j]) * proj_scale_;
  const double ec = proj_err_[qc];
  const double* cmax = cmax_.data();
  const double* radius = radius_.data();
  double* floor = m2floor_.data();
  constexpr double kRel64 = 1e-12;  // the float64 arithmetic here, k <= 4096 terms
  int64_t out = 0;
  for (int64_t s2 = 0; s2 < ns; ++s2) {
    const int64_t kc = surv[s2];
    const double* pm = cproj_.data() + kc * k;
    double s0 = 0, s1 = 0, s2a = 0, s3 = 0;
    int64_t j = 0;
    for (; j + 4 <= k; j += 4) {
      const double d0 = pc[j] - pm[j], d1 = pc[j + 1] - pm[j + 1];
      const double d2 = pc[j + 2] - pm[j + 2], d3 = pc[j + 3] - pm[j + 3];
      s0 += d0 * d0;
      s1 += d1 * d1;
      s2a += d2 * d2;
      s3 += d3 * d3;
    }
    for (; j < k; ++j) {
      const double d = pc[j] - pm[j];
      s0 += d * d;
    }
    // dc = ||c - centroid|| >= ||V(c - centroid)|| >= this
    const double dlo = std::sqrt((s0 + s1) + (s2a + s3)) * (1 - kRel64) - ec - cproj_err_[kc];
    const double lb = dlo * (1 - kRel) - radius[kc] * (1 + kRel);
    const double lb2 = lb * lb;
    const bool ruled = (lb > 0) & (lb2 >= cmax[kc]);
    if (ruled && lb2 < floor[kc]) floor[kc] = lb2;
    surv[out] = kc;
    out += static_cast<int64_t>(!ruled);
  }
  return out;
}

template <typename Acc>
void PrunedEngine<Acc>::projection_window(int64_t tests, int64_t skips) {
  proj_tests_ += tests;
  proj_skips_ += skips;
  proj_win_tests_ += tests;
  proj_win_skips_ += skips;
  ++proj_win_steps_;
  // judged over at least 16 steps and 4096 tests (or 256 steps)
  if (proj_win_steps_ < 16 || (proj_win_tests_ < 4096 && proj_win_steps_ < 256)) return;
  const bool pays = static_cast<double>(proj_win_skips_) >
                    proj_break_even_ * static_cast<double>(proj_win_tests_);
  if (pays) {
    proj_next_pause_ = 64;
  } else {
    proj_pause_ = proj_next_pause_;
    proj_next_pause_ = std::min<int64_t>(2 * proj_next_pause_, 8192);
  }
  proj_win_tests_ = proj_win_skips_ = proj_win_steps_ = 0;
}

template <typename Acc>
void PrunedEngine<Acc>::member_distances(const int64_t* pos, int64_t cnt, const Acc* c,
                                         int64_t ordinal, char* moved) {
  if (cnt <= 0) return;
  const D2RowsFn<Acc> d2 = src_.d2();
  const char* ptrs[kBlock] = {};
  Acc sc[kBlock], out[kBlock];
  for (int64_t t = 0; t < cnt; ++t) {
    ptrs[t] = member_row(pos[t]);
    if (src_.scale) sc[t] = scale_[pos[t]];
  }
  d2(src_.X.dtype, ptrs, src_.scale ? sc : nullptr, cnt, c, D_, out);
  for (int64_t t = 0; t < cnt; ++t) {
    const int64_t q = pos[t];
    const bool nearer = take_center_distance(out[t], ordinal, m_[q], m2_[q], assign_[q]);
    moved[t] = static_cast<char>(nearer & (is_top_[q] != 0));
  }
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
  // pass 1 (serial, cheap): which cells can change, and which of their members.
  // First the bound from the center's own cell, branch-free over all cells
  // (centroid distances are known); on proxy features it leaves about one
  // cell in five, and only those get the center's distance to their centroid.
  const double* cmax = cmax_.data();
  const double* radius = radius_.data();
  double* floor = m2floor_.data();
  int64_t* surv = surv_.data();
  int64_t ns = 0;
  if (ccrow) {
    char* keep = keep_.data();
    centroid_bound_pass(ccrow, pc, radius, cmax, floor, keep, nc);
    for (int64_t kc = 0; kc < nc; ++kc) {
      surv[ns] = kc;
      ns += keep[kc];
    }
  } else {
    for (int64_t kc = 0; kc < nc; ++kc) {
      surv[ns] = kc;
      ns += static_cast<int64_t>(cmax[kc] >= 0);
    }
  }
  // the projected centroid bound first, from k coordinates per cell (on the
  // benchmarks' 200,000 x 2048 set the centroid-to-centroid bound leaves 376
  // of 512 cells, whose float64 distances cost more than the rows read)
  const int64_t qc = ref.row >= 0 ? where_[ref.row] : -1;
  if (proj_dims_ > 0 && qc >= 0) ns = projection_cells(qc, surv, ns);
  // the center's squared distance to the surviving centroids in one kernel
  // call: four rows at a time, where one call per cell cost more than its
  // arithmetic
  for (int64_t s = 0; s < ns; ++s) sptrs_[s] = centroid_ptrs_[surv[s]];
  k.d2_rows_f64(DType::f64, sptrs_.data(), nullptr, ns, c64, D, dc_.data());
  // The cells whose own bound leaves them (branch-free: about half of the
  // survivors fail it, a coin flip for the predictor), then the members of
  // each within the annulus.
  std::vector<Work>& work = work_;
  work.resize(static_cast<size_t>(ns));
  int64_t nw = 0;
  for (int64_t s = 0; s < ns; ++s) {
    const int64_t kc = surv[s];
    const double dc = std::sqrt(dc_[s]);
    const double lb = dc * (1 - kRel) - radius[kc] * (1 + kRel);
    const double lb2 = lb * lb;
    const bool ruled = (lb > 0) & (lb2 >= cmax[kc]);  // no member can get closer
    const double f = floor[kc];
    floor[kc] = (ruled & (lb2 < f)) ? lb2 : f;
    work[nw] = {kc, lo_[kc], lo_[kc + 1], dc, {0.0, 0.0}};
    nw += static_cast<int64_t>(!ruled);
  }
  work.resize(static_cast<size_t>(nw));
  const double* pb = p_.data();
  for (Work& wk : work) {
    const double cm = cmax[wk.cell];
    if (!(cm < std::numeric_limits<double>::infinity())) continue;  // no center yet
    // members with p outside [dc - R - slack, dc + R + slack] are at least
    // R = sqrt(cmax) away from c
    const double R = std::sqrt(cm);
    const double slack = 1e-9 * (wk.dc + R + radius[wk.cell]);
    const int64_t a = wk.qa, b = wk.qb;
    annulus_range(pb + a, b - a, wk.dc - R - slack, wk.dc + R + slack, &wk.qa, &wk.qb);
    wk.qa += a;
    wk.qb += a;
    if (wk.qa > a || wk.qb < b) floor[wk.cell] = std::min(floor[wk.cell], cm);
  }
  // the center's distances to the pivots of the cells left, in one call;
  // a step that bounds members by the projection needs no pivots
  if (proj_pause_ > 0) --proj_pause_;
  const bool by_projection = projection_on() && qc >= 0;
  const int64_t nwork = static_cast<int64_t>(work.size());
  if (!by_projection) {
    for (int64_t w = 0; w < nwork; ++w)
      for (int j = 0; j < kPivots; ++j)
        sptrs_[w * kPivots + j] = pivot_ptrs_[work[w].cell * kPivots + j];
    k.d2_rows_f64(DType::f64, sptrs_.data(), nullptr, nwork * kPivots, c64, D, dc_.data());
    for (int64_t w = 0; w < nwork; ++w)
      for (int j = 0; j < kPivots; ++j) work[w].dq[j] = std::sqrt(dc_[w * kPivots + j]);
  }
  // pass 2: the members the annuli (and the projection) leave, then their
  // distances in blocks (threads only for large steps)
  int64_t ncand = 0;
  int64_t* cand = cand_.data();
  for (const Work& wk : work)
    ncand += annulus_members(wk, cand + ncand, !by_projection);
  if (by_projection && ncand > 0) {
    const int64_t tested = ncand;
    const int nt = (threads_ > 1 && ncand >= 32768) ? threads_ : 1;
    if (nt == 1) {
      ncand = projection_members(qc, cand, ncand);
    } else {  // each thread compacts its share in place, then the shares close up
      std::vector<int64_t> kept(static_cast<size_t>(nt));
      const int64_t share = (ncand + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
      for (int w = 0; w < nt; ++w) {
        const int64_t a = std::min(ncand, w * share), b = std::min(ncand, a + share);
        kept[w] = projection_members(qc, cand + a, b - a);
      }
      int64_t out = 0;
      for (int w = 0; w < nt; ++w) {
        const int64_t a = std::min(ncand, w * share);
        std::memmove(cand + out, cand + a, static_cast<size_t>(kept[w]) * sizeof(int64_t));
        out += kept[w];
      }
      ncand = out;
    }
    projection_window(tested, tested - ncand);
    // for the fallback's bookkeeping: a test costs about this share of a distance
    window_evals_ += static_cast<int64_t>(0.5 * proj_break_even_ * static_cast<double>(tested));
  }
  const int64_t nblk = (ncand + kBlock - 1) / kBlock;
  // A parallel region per step pays only for large steps: on Fashion-MNIST
  // features (a few hundred distances x 64 dims per step) two threads from 8k
  // element-distances on took 0.40 s against 0.35 s for one (2-vCPU VM);
  // from 256k on, two equal one, and the early steps of wide data still split.
  const bool parallel = threads_ > 1 && ncand * D >= (int64_t{1} << 18) && nblk > 1;
  char* moved = moved_.data();
#pragma omp parallel for num_threads(threads_) schedule(static) if (parallel)
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t t0 = blk * kBlock;
    member_distances(cand + t0, std::min(kBlock, ncand - t0), c, ordinal, moved + t0);
  }
  // Values only decrease: a cell's best two change only if one of them does.
  for (int64_t t = 0; t < ncand; ++t)
    if (moved[t]) changed_[cellpos_[cand[t]]] = 1;
  for (const Work& wk : work) {
    if (changed_[wk.cell]) {
      changed_[wk.cell] = 0;
      update_cell_top(wk.cell);
    }
  }
  evals_ += ncand;
}

template <typename Acc>
void PrunedEngine<Acc>::add_batch(const CenterRef* refs, const int64_t* ordinals, int64_t q) {
  // Several centers at once (initial centers; a pass of the batched driver):
  // the same three bounds as add_one for every (cell, center) pair, then each
  // cell's surviving centers are applied in ordinal order while its members
  // stay in cache.
  const int64_t nc = n_cells_, D = D_;
  const KernelTable& k = *src_.k;
  std::vector<double> c64(static_cast<size_t>(q * D));
  std::vector<Acc> cacc(static_cast<size_t>(q * D));
  for (int64_t j = 0; j < q; ++j) {
    src_.center64(refs[j], c64.data() + j * D);
    for (int64_t t = 0; t < D; ++t) cacc[j * D + t] = static_cast<Acc>(c64[j * D + t]);
  }
  const double* cmax = cmax_.data();
  const double* radius = radius_.data();
  double* floor = m2floor_.data();
  // Phase A (serial: it lowers the cells' floors): per center, the cheap
  // bound from its own cell (centroid distances known), the center's distance
  // to the centroids left, and the cell bound; the surviving (cell, center)
  // pairs with their centroid distance, grouped by cell.
  struct Pair {
    int64_t j;
    double dc;
  };
  std::vector<int64_t> count(static_cast<size_t>(nc + 1), 0);
  std::vector<std::vector<Pair>> by_center(static_cast<size_t>(q));
  int64_t* surv = surv_.data();
  char* keep = keep_.data();
  for (int64_t j = 0; j < q; ++j) {
    int64_t ns = 0;
    if (!cc_.empty() && refs[j].row >= 0) {
      const int64_t qc = where_[refs[j].row];
      centroid_bound_pass(cc_.data() + static_cast<int64_t>(cellpos_[qc]) * nc, p_[qc], radius,
                          cmax, floor, keep, nc);
      for (int64_t kc = 0; kc < nc; ++kc) {
        surv[ns] = kc;
        ns += keep[kc];
      }
    } else {
      for (int64_t kc = 0; kc < nc; ++kc) {
        surv[ns] = kc;
        ns += static_cast<int64_t>(cmax[kc] >= 0);
      }
    }
    for (int64_t s2 = 0; s2 < ns; ++s2) sptrs_[s2] = centroid_ptrs_[surv[s2]];
    k.d2_rows_f64(DType::f64, sptrs_.data(), nullptr, ns, c64.data() + j * D, D, dc_.data());
    std::vector<Pair>& mine = by_center[static_cast<size_t>(j)];
    for (int64_t s2 = 0; s2 < ns; ++s2) {
      const int64_t kc = surv[s2];
      const double dc = std::sqrt(dc_[s2]);
      const double lb = dc * (1 - kRel) - radius[kc] * (1 + kRel);
      const double lb2 = lb * lb;
      const bool ruled = (lb > 0) && (lb2 >= cmax[kc]);
      if (ruled) {
        floor[kc] = std::min(floor[kc], lb2);
      } else {
        mine.push_back({kc, dc});
        ++count[static_cast<size_t>(kc) + 1];
      }
    }
  }
  for (int64_t kc = 0; kc < nc; ++kc) count[kc + 1] += count[kc];
  std::vector<Pair> pairs(static_cast<size_t>(count[nc]));  // (center, dc) by cell
  {
    std::vector<int64_t> fill(count.begin(), count.end() - 1);
    for (int64_t j = 0; j < q; ++j)  // centers in ordinal order within each cell
      for (const Pair& pr : by_center[static_cast<size_t>(j)])
        pairs[static_cast<size_t>(fill[pr.j]++)] = {j, pr.dc};
  }
  std::vector<std::vector<Pair>>().swap(by_center);
  // Phase B (parallel over cells): each surviving pair's annulus range, its
  // pivots' distances and the member annuli, then the members' distances.
  int64_t evals = 0;
  std::vector<int64_t> busy;
  for (int64_t kc = 0; kc < nc; ++kc)
    if (count[kc + 1] > count[kc]) busy.push_back(kc);
  const int64_t nbusy = static_cast<int64_t>(busy.size());
  const bool parallel = threads_ > 1 && nbusy > 1;
#pragma omp parallel num_threads(threads_) reduction(+ : evals) if (parallel)
  {
    std::vector<int64_t> kept(static_cast<size_t>(n_ > 0 ? std::min<int64_t>(n_, int64_t{1} << 20) : 1));
    char moved[kBlock];
    const char* pivots[kPivots];
    double dq2[kPivots];
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < nbusy; ++b) {
      const int64_t kc = busy[static_cast<size_t>(b)];
      const double cm = cmax[kc];  // at the pass's start: a bound for every later center
      const int64_t lo = lo_[kc], hi = lo_[kc + 1];
      if (static_cast<int64_t>(kept.size()) < hi - lo) kept.resize(static_cast<size_t>(hi - lo));
      bool changed = false;
      for (int64_t e = count[kc]; e < count[kc + 1]; ++e) {
        const Pair& pr = pairs[static_cast<size_t>(e)];
        Work wk{kc, lo, hi, pr.dc, {0.0, 0.0}};
        if (cm < std::numeric_limits<double>::infinity()) {
          // members with p outside [dc - R - slack, dc + R + slack] are at
          // least R = sqrt(cmax) away from the center
          const double R = std::sqrt(cm);
          const double slack = 1e-9 * (pr.dc + R + radius[kc]);
          annulus_range(p_.data() + lo, hi - lo, pr.dc - R - slack, pr.dc + R + slack, &wk.qa, &wk.qb);
          wk.qa += lo;
          wk.qb += lo;
          if (wk.qa > lo || wk.qb < hi) floor[kc] = std::min(floor[kc], cm);
          if (wk.qa >= wk.qb) continue;
          for (int j = 0; j < kPivots; ++j)
            pivots[j] = pivot_ptrs_[kc * kPivots + j];
          k.d2_rows_f64(DType::f64, pivots, nullptr, kPivots, c64.data() + pr.j * D, D, dq2);
          for (int j = 0; j < kPivots; ++j) wk.dq[j] = std::sqrt(dq2[j]);
        } else {  // no center yet: every member, no bound
          wk.dq[0] = wk.dq[1] = 0.0;
        }
        const int64_t cnt = cm < std::numeric_limits<double>::infinity()
                                ? annulus_members(wk, kept.data())
                                : live_members(wk, kept.data());
        for (int64_t t0 = 0; t0 < cnt; t0 += kBlock) {
          const int64_t c = std::min(kBlock, cnt - t0);
          member_distances(kept.data() + t0, c, cacc.data() + pr.j * D, ordinals[pr.j], moved);
          for (int64_t t = 0; t < c; ++t) changed = changed || moved[t];
        }
        evals += cnt;
      }
      if (changed) {
        set_cell_top(kc, cell_top(kc));
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
int64_t PrunedEngine<Acc>::live_members(const Work& wk, int64_t* keep) const {
  int64_t cnt = 0;
  for (int64_t qq = wk.qa; qq < wk.qb; ++qq) {
    keep[cnt] = qq;
    cnt += static_cast<int64_t>(m_[qq] >= Acc(0));
  }
  return cnt;
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
double PrunedEngine<Acc>::top_candidates(int64_t T, std::vector<BandMember>& out) {
  if (fallback_) return fallback_->top_candidates(T, out);
  // Every value is current (a skipped distance provably cannot lower one).
  // Cells by their best value, best first; once T + 1 values are pooled, a
  // cell whose best is below the (T+1)-th pooled value adds nothing.
  std::vector<std::pair<double, int64_t>> cells;
  for (int64_t k = 0; k < n_cells_; ++k)
    if (ctop_[k].i1 >= 0) cells.push_back({ctop_[k].v1, k});
  std::sort(cells.begin(), cells.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::pair<double, int64_t>> pool;  // (value, position)
  std::vector<double> vals;
  double floor = -1;  // the (T+1)-th largest pooled value once there are T + 1
  for (const auto& c : cells) {
    if (static_cast<int64_t>(pool.size()) > T && c.first < floor) break;
    const int64_t k = c.second;
    for (int64_t q = lo_[k]; q < lo_[k + 1]; ++q) {
      const double v = static_cast<double>(m_[q]);
      if (v >= 0) pool.push_back({v, q});
    }
    if (static_cast<int64_t>(pool.size()) > T) {
      vals.resize(pool.size());
      for (size_t j = 0; j < pool.size(); ++j) vals[j] = pool[j].first;
      std::nth_element(vals.begin(), vals.begin() + T, vals.end(), std::greater<double>());
      floor = vals[static_cast<size_t>(T)];
    }
  }
  // the pool's order must be by row index for ties: positions -> rows
  for (auto& p : pool) p.second = perm_[p.second];
  return select_top<Acc>(pool, T, [&](int64_t row) {
    const int64_t q = where_[row];
    return BandMember{row, static_cast<double>(m_[q]),
                      std::min(static_cast<double>(m2_[q]), m2floor_[cellpos_[q]]), assign_[q]};
  }, out);
}

template <typename Acc>
void PrunedEngine<Acc>::export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                                     int64_t centers) const {
  if (fallback_) return fallback_->export_state(m, m2, assign, fresh, centers);
  for (int64_t k = 0; k < n_cells_; ++k) {
    for (int64_t q = lo_[k]; q < lo_[k + 1]; ++q) {
      const int64_t row = perm_[q];
      m[row] = static_cast<double>(m_[q]);
      // the cell's floor bounds the centers its members skipped
      m2[row] = std::min(static_cast<double>(m2_[q]), m2floor_[k]);
      assign[row] = assign_[q];
      fresh[row] = centers;  // every value is current
    }
  }
}

template <typename Acc>
bool PrunedEngine<Acc>::adopt_state(const double* m, const double* m2, const int64_t* assign,
                                    const int64_t* fresh, int64_t centers,
                                    const int64_t* center_rows) {
  SVP_ASSERT(!fallback_);
  for (int64_t i = 0; i < n_; ++i)
    if (m[i] >= 0 && fresh[i] < centers) return false;  // a stale row: the lazy engine's state
  live_ = 0;
  for (int64_t q = 0; q < n_; ++q) {
    const int64_t row = perm_[q];
    m_[q] = static_cast<Acc>(m[row]);  // from Acc: exact
    // floors included: kept exactly where Acc holds the value, else rounded
    // down, so that it stays a lower bound
    const Acc m2a = static_cast<Acc>(m2[row]);
    m2_[q] = static_cast<double>(m2a) == m2[row] ? m2a : round_down<Acc>(m2[row]);
    assign_[q] = assign[row];
    live_ += m_[q] >= Acc(0);
  }
  std::fill(m2floor_.begin(), m2floor_.end(), std::numeric_limits<double>::infinity());
  for (auto& cc : cell_centers_) cc.clear();
  n_centers_ = centers;
  n_local_centers_ = 0;
  for (int64_t j = 0; j < centers; ++j) {  // centers by cell, for exact_min
    const int64_t pos = where_[center_rows[j]];
    cell_centers_[cellpos_[pos]].push_back({p_[pos], center_rows[j]});
    ++n_local_centers_;
  }
  for (int64_t k = 0; k < n_cells_; ++k) {
    set_cell_top(k, cell_top(k));
    tree_update(k);
  }
  return true;
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
  // y's distance to every centroid in one kernel call (one call per cell
  // cost more than its arithmetic)
  std::vector<double> e2(static_cast<size_t>(nc));
  k.d2_rows_f64(DType::f64, centroid_ptrs_.data(), nullptr, nc, ycenter, D, e2.data());
  const double limit = upper * (1 + kRel);
  std::vector<int64_t> keep;
  for (int64_t kc = 0; kc < nc; ++kc) {
    const std::vector<CellCenter>& cs = cell_centers_[kc];
    if (cs.empty()) continue;
    const double e = std::sqrt(e2[kc]);
    // every center of this cell is at least e - r from y
    const double lb_cell = e * (1 - kRel) - radius_[kc] * (1 + kRel);
    if (lb_cell > 0 && lb_cell * lb_cell > limit) continue;
    for (const CellCenter& cc : cs) {
      const double lb = std::fabs(e - cc.p) - kRel * (e + cc.p);
      if (lb > 0 && lb * lb > limit) continue;
      keep.push_back(cc.row);
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
