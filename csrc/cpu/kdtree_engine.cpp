#include "kdtree_engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace svp {
namespace cpu {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The points being split: coordinates by point (D each) and row ids, and
// scratch of the same size (a split of [lo, hi) uses only [lo, hi) of it, so
// that tasks on disjoint ranges share it).
struct Block {
  double* y;
  int64_t* row;
  double* tmp_y;     // [n D]
  int64_t* tmp_row;  // [n]
  int64_t* split_at;  // [2^levels] where each node's points divide (heap order)
};

// Splits points [lo, hi) (node v of the tree) along their widest coordinate
// at a median estimated from an evenly spaced sample, moving the smaller
// values first (stable, branch-free), then recurses `levels` more levels; the
// first `task_levels` levels in parallel tasks. The halves need not be exactly
// equal: node ranges are recorded in split_at.
template <int DD>
void split(const Block& b, int64_t v, int64_t lo, int64_t hi, int levels, int64_t Drt,
           int task_levels) {
  const int64_t D = DD > 0 ? DD : Drt;
  const int64_t cnt = hi - lo;
  if (levels == 0) return;
  double* y = b.y + lo * D;
  int64_t* row = b.row + lo;
  int64_t at = cnt / 2;
  if (cnt >= 2) {
    double lo_c[KdTreeEngine::kMaxDim], hi_c[KdTreeEngine::kMaxDim];
    for (int64_t j = 0; j < D; ++j) {
      lo_c[j] = kInf;
      hi_c[j] = -kInf;
    }
    for (int64_t q = 0; q < cnt; ++q)
      for (int64_t j = 0; j < D; ++j) {
        lo_c[j] = std::min(lo_c[j], y[q * D + j]);
        hi_c[j] = std::max(hi_c[j], y[q * D + j]);
      }
    int64_t dim = 0;
    for (int64_t j = 1; j < D; ++j)
      if (hi_c[j] - lo_c[j] > hi_c[dim] - lo_c[dim]) dim = j;
    // the median of up to 255 evenly spaced points: within a few percent of
    // the true one, for a fraction of the cost of selecting it
    const int64_t ns = std::min<int64_t>(255, cnt);
    double sample[255];
    for (int64_t k = 0; k < ns; ++k) sample[k] = y[(k * cnt / ns) * D + dim];
    std::nth_element(sample, sample + ns / 2, sample + ns);
    const double median = sample[ns / 2];
    int64_t below = 0;
    for (int64_t q = 0; q < cnt; ++q) below += y[q * D + dim] < median;
    // below the median left, the rest right; all on one side (many equal
    // values): split the block in the middle instead
    double* ty = b.tmp_y + lo * D;
    int64_t* trow = b.tmp_row + lo;
    if (below == 0 || below == cnt) {
      at = cnt / 2;
    } else {
      at = below;
      int64_t l = 0, r = below;
      for (int64_t q = 0; q < cnt; ++q) {
        const bool left = y[q * D + dim] < median;
        const int64_t to = left ? l : r;
        l += left;
        r += !left;
        for (int64_t j = 0; j < D; ++j) ty[to * D + j] = y[q * D + j];
        trow[to] = row[q];
      }
      std::memcpy(y, ty, static_cast<size_t>(cnt * D) * sizeof(double));
      std::memcpy(row, trow, static_cast<size_t>(cnt) * sizeof(int64_t));
    }
  }
  b.split_at[v] = lo + at;
  if (task_levels > 0) {
#pragma omp task default(shared) firstprivate(v, lo, at, levels, Drt, task_levels)
    split<DD>(b, 2 * v, lo, lo + at, levels - 1, Drt, task_levels - 1);
#pragma omp task default(shared) firstprivate(v, lo, hi, at, levels, Drt, task_levels)
    split<DD>(b, 2 * v + 1, lo + at, hi, levels - 1, Drt, task_levels - 1);
#pragma omp taskwait
  } else {
    split<DD>(b, 2 * v, lo, lo + at, levels - 1, Drt, 0);
    split<DD>(b, 2 * v + 1, lo + at, hi, levels - 1, Drt, 0);
  }
}

void split_all(const Block& b, int64_t n, int levels, int64_t D, int task_levels) {
  switch (D) {
    case 1: return split<1>(b, 1, 0, n, levels, D, task_levels);
    case 2: return split<2>(b, 1, 0, n, levels, D, task_levels);
    case 3: return split<3>(b, 1, 0, n, levels, D, task_levels);
    case 4: return split<4>(b, 1, 0, n, levels, D, task_levels);
    default: return split<0>(b, 1, 0, n, levels, D, task_levels);
  }
}

bool same(const Top2& a, const Top2& b) {
  return a.i1 == b.i1 && a.i2 == b.i2 && a.v1 == b.v1 && a.v2 == b.v2;
}

}  // namespace

KdTreeEngine::KdTreeEngine(const RowSource<double>& src, int num_threads, int64_t leaf_size)
    : src_(src) {
  n_ = src.X.rows;
  D_ = src.X.cols;
  SVP_CHECK_ARG(D_ <= kMaxDim,
                "method 'kdtree' is for low-dimensional points (D <= %lld), got D = %lld; "
                "use 'auto', 'lazy' or 'pruned'",
                (long long)kMaxDim, (long long)D_);
  int depth = 0;
  while ((n_ >> depth) > std::max<int64_t>(leaf_size, 1)) ++depth;
  n_leaves_ = int64_t{1} << depth;
  // Box bounds and distances are float64 sums of D squares of differences:
  // each errs by at most (D + 2) 2^-53 of its value plus underflow, whatever
  // the order or contraction. Four times that, relative, and an absolute term
  // far above the underflow, keep every bound below the distances it bounds.
  rel_margin_ = 4.0 * static_cast<double>(D_ + 2) * 1.1102230246251565e-16;
  abs_margin_ = static_cast<double>(D_ + 2) * 1e-300;
  build(std::max(1, num_threads), depth);
}

void KdTreeEngine::build(int threads, int depth) {
  const int64_t n = n_, D = D_;
  // working-space coordinates (cosine: x / ||x||, as the centers are), by point
  std::vector<double> yb(static_cast<size_t>(n * D));
  std::vector<int64_t> rows(static_cast<size_t>(n));
  // Threads pay only on large inputs: waking a second thread costs more than
  // these passes over 100,000 points (measured: 12-20 ms against 0.3 ms for
  // the coordinates, 50-70 ms against 30 ms for the splits, on 2 cores)
  const bool parallel = threads > 1 && n >= (int64_t{1} << 20);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t i = 0; i < n; ++i) {
    src_.center64(i, yb.data() + i * D);
    rows[i] = i;
  }
  int task_levels = 0;
  while ((1 << task_levels) < 4 * threads && task_levels < depth) ++task_levels;
  std::vector<int64_t> split_at(static_cast<size_t>(n_leaves_), 0);
  {
    std::vector<double> tmp_y(static_cast<size_t>(n * D));
    std::vector<int64_t> tmp_row(static_cast<size_t>(n));
    const Block blk{yb.data(), rows.data(), tmp_y.data(), tmp_row.data(), split_at.data()};
#pragma omp parallel num_threads(threads) if (parallel)
#pragma omp single
    split_all(blk, n, depth, D, parallel ? task_levels : 0);
  }

  const int64_t nodes = 2 * n_leaves_;
  lo_.assign(static_cast<size_t>(nodes), 0);
  hi_.assign(static_cast<size_t>(nodes), 0);
  // node ranges follow the splits: the root holds [0, n)
  lo_[1] = 0;
  hi_[1] = n;
  for (int64_t v = 1; v < n_leaves_; ++v) {
    const int64_t mid = split_at[v];
    lo_[2 * v] = lo_[v];
    hi_[2 * v] = mid;
    lo_[2 * v + 1] = mid;
    hi_[2 * v + 1] = hi_[v];
  }
  // one block per leaf: each field for all of the leaf's slots together, so
  // that a center is applied to a leaf in vector code; slots past a leaf's
  // points are padding (m = -1: never live)
  int64_t widest = 1;
  for (int64_t v = n_leaves_; v < nodes; ++v) widest = std::max(widest, hi_[v] - lo_[v]);
  cap_ = (widest + 7) / 8 * 8;
  block_ = cap_ * (D + kState);
  blocks_.assign(static_cast<size_t>(n_leaves_ * block_), 0.0);
  where_.resize(static_cast<size_t>(n));
  for (int64_t leaf = 0; leaf < n_leaves_; ++leaf) {
    const int64_t v = n_leaves_ + leaf, a = lo_[v], cnt = hi_[v] - a;
    LeafView L = leaf_view(leaf);
    for (int64_t r = 0; r < cap_; ++r) {
      const bool real = r < cnt;
      for (int64_t j = 0; j < D; ++j) L.y[j * cap_ + r] = real ? yb[(a + r) * D + j] : 0.0;
      L.m[r] = real ? kInf : -1.0;
      L.m2[r] = kInf;
      L.assign[r] = -1;
      L.row[r] = real ? rows[a + r] : -1;
      if (real) where_[rows[a + r]] = leaf * cap_ + r;
    }
  }
  yb = std::vector<double>();

  box_.assign(static_cast<size_t>(nodes * 2 * D), 0.0);
  top_.assign(static_cast<size_t>(nodes), Top2());
  floor_.assign(static_cast<size_t>(nodes), kInf);
  stale_.assign(static_cast<size_t>(nodes), 0);
  for (int64_t v = nodes - 1; v >= 1; --v) {
    double* b = box_.data() + v * 2 * D;
    if (is_leaf(v)) {
      const LeafView L = leaf_view(v - n_leaves_);
      const int64_t cnt = hi_[v] - lo_[v];
      for (int64_t j = 0; j < D; ++j) {
        double a = kInf, c = -kInf;
        for (int64_t r = 0; r < cnt; ++r) {
          a = std::min(a, L.y[j * cap_ + r]);
          c = std::max(c, L.y[j * cap_ + r]);
        }
        b[j] = a;
        b[D + j] = c;
      }
      leaf_top(v);
    } else {
      const double* l = box_.data() + 2 * v * 2 * D;
      const double* r = box_.data() + (2 * v + 1) * 2 * D;
      for (int64_t j = 0; j < D; ++j) {
        b[j] = std::min(l[j], r[j]);
        b[D + j] = std::max(l[D + j], r[D + j]);
      }
      top_[v] = top_[2 * v];
      top_[v].merge(top_[2 * v + 1]);
    }
  }
  d_.resize(static_cast<size_t>(cap_));
  c_.resize(static_cast<size_t>(D));
}

template <int DD>
double KdTreeEngine::box_bound(int64_t node, const double* c) const {
  const int64_t D = DD > 0 ? DD : D_;
  const double* b = box_.data() + node * 2 * D;
  double s = 0;
  for (int64_t j = 0; j < D; ++j) {
    const double g = std::max(0.0, std::max(b[j] - c[j], c[j] - b[D + j]));
    s += g * g;
  }
  return s * (1.0 - rel_margin_) - abs_margin_;
}

namespace {

// The best two live slots of a leaf (Top2's order: larger value first, then
// the lower row), as four vector passes over the slots instead of a
// branching insertion per slot. Excluded and padding slots hold -1.
__attribute__((target_clones("avx512f", "avx2", "default"))) void leaf_best_two(
    const double* __restrict m, const int64_t* __restrict row, int64_t cap, Top2* out) {
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  double a = -1;
  for (int64_t r = 0; r < cap; ++r) a = m[r] > a ? m[r] : a;
  Top2 t;
  if (a < 0) {
    *out = t;
    return;
  }
  int64_t ia = kNone;
  for (int64_t r = 0; r < cap; ++r) ia = (m[r] == a && row[r] < ia) ? row[r] : ia;
  double b = -1;
  for (int64_t r = 0; r < cap; ++r) b = (m[r] > b && row[r] != ia) ? m[r] : b;
  t.v1 = a;
  t.i1 = ia;
  if (b >= 0) {
    int64_t ib = kNone;
    for (int64_t r = 0; r < cap; ++r) ib = (m[r] == b && row[r] != ia && row[r] < ib) ? row[r] : ib;
    t.v2 = b;
    t.i2 = ib;
  }
  *out = t;
}

}  // namespace

void KdTreeEngine::leaf_top(int64_t v) {
  const LeafView L = leaf_view(v - n_leaves_);
  leaf_best_two(L.m, L.row, cap_, &top_[v]);
}

namespace {

// A center's distances to every slot of a leaf, applied to their state
// (take_center_distance of engine.h, branch-free over the slots so that it
// runs as vector code; padding slots hold m = -1 and stay as they are).
// Returns the live slots; *moved: whether a slot at least as high as the
// leaf's second best fell (only then can its best two change). Compiled for
// AVX-512, AVX2 and the baseline, chosen at load time.
__attribute__((target_clones("avx512f", "avx2", "default"))) int64_t leaf_update(
    const double* __restrict y, int64_t D, int64_t cap, const double* __restrict c,
    double* __restrict m, double* __restrict m2, int64_t* __restrict assign, int64_t ordinal,
    double second, double* __restrict d, bool* moved) {
  for (int64_t r = 0; r < cap; ++r) d[r] = 0;
  for (int64_t j = 0; j < D; ++j) {
    const double cj = c[j];
    const double* __restrict yj = y + j * cap;
    for (int64_t r = 0; r < cap; ++r) {
      const double t = yj[r] - cj;
      d[r] += t * t;
    }
  }
  int64_t live = 0, fell = 0;
  for (int64_t r = 0; r < cap; ++r) {
    const double mr = m[r], m2r = m2[r], dr = d[r];
    const bool nearer = dr < mr;
    m2[r] = nearer ? mr : (dr < m2r ? dr : m2r);
    m[r] = nearer ? dr : mr;
    assign[r] = nearer ? ordinal : assign[r];
    fell += nearer & (mr >= second);
    live += mr >= 0;
  }
  *moved = fell > 0;
  return live;
}

}  // namespace

// The distances of a leaf's points to c, applied to their state; returns
// whether the leaf's best two changed.
bool KdTreeEngine::apply_leaf(int64_t v, const double* c, int64_t ordinal) {
  LeafView L = leaf_view(v - n_leaves_);
  bool moved = false;
  evals_ += leaf_update(L.y, D_, cap_, c, L.m, L.m2, L.assign, ordinal, top_[v].v2, d_.data(),
                        &moved);  // as a scan counts: live points only
  if (!moved) return false;
  leaf_top(v);
  return true;
}

// Lowers the min-distances the center can reach below node v; returns whether
// the node's best two changed. A node marked stale by exclude() is brought up
// to date on the way (its stale best value is an upper bound: excluding a
// point only lowers it, so pruning by it stays safe).
template <int DD>
bool KdTreeEngine::apply(int64_t v, const double* c, int64_t ordinal) {
  Top2& t = top_[v];
  const bool stale = stale_[v];
  if (!stale && (t.i1 < 0 || t.v1 <= 0)) return false;  // nothing that can go lower
  const bool skip = t.i1 < 0 || t.v1 <= 0;
  const double lb = skip ? 0.0 : box_bound<DD>(v, c);
  if (skip || lb >= t.v1) {
    if (!skip) floor_[v] = std::min(floor_[v], lb);
    if (stale) refresh(v);
    return stale;
  }
  if (is_leaf(v)) {
    const bool moved = apply_leaf(v, c, ordinal);
    if (stale) {
      stale_[v] = 0;
      if (!moved) leaf_top(v);
      return true;
    }
    return moved;
  }
  const bool left = apply<DD>(2 * v, c, ordinal);
  const bool right = apply<DD>(2 * v + 1, c, ordinal);
  if (!left && !right && !stale) return false;
  stale_[v] = 0;
  Top2 u = top_[2 * v];
  u.merge(top_[2 * v + 1]);
  const bool changed = stale || !same(u, t);
  t = u;
  return changed;
}

void KdTreeEngine::refresh(int64_t v) {
  if (!stale_[v]) return;
  stale_[v] = 0;
  if (is_leaf(v)) {
    leaf_top(v);
    return;
  }
  refresh(2 * v);
  refresh(2 * v + 1);
  top_[v] = top_[2 * v];
  top_[v].merge(top_[2 * v + 1]);
}

void KdTreeEngine::add_centers(const CenterRef* refs, const int64_t* ordinals, int64_t q) {
  for (int64_t k = 0; k < q; ++k) {
    src_.center64(refs[k], c_.data());  // float64 is this engine's working type
    switch (D_) {
      case 1: apply<1>(1, c_.data(), ordinals[k]); break;
      case 2: apply<2>(1, c_.data(), ordinals[k]); break;
      case 3: apply<3>(1, c_.data(), ordinals[k]); break;
      case 4: apply<4>(1, c_.data(), ordinals[k]); break;
      default: apply<0>(1, c_.data(), ordinals[k]); break;
    }
  }
  any_stale_ = false;  // the walk from the root brought every stale node up to date
}

// Marks the point picked; its leaf and their ancestors are brought up to date
// by the next walk (a new center) or query, not here: the new center's walk
// passes through them anyway.
void KdTreeEngine::exclude(int64_t row) {
  const int64_t at = where_[row], leaf = at / cap_;
  leaf_view(leaf).m[at - leaf * cap_] = -1;
  for (int64_t v = n_leaves_ + leaf; v >= 1 && !stale_[v]; v >>= 1) stale_[v] = 1;
  any_stale_ = true;
}

Top2 KdTreeEngine::top2(const ErrorModel&) {
  if (any_stale_) {
    refresh(1);
    any_stale_ = false;
  }
  return top_[1];
}

void KdTreeEngine::band_node(int64_t v, double thr, double floor,
                             std::vector<BandMember>& out) const {
  const Top2& t = top_[v];
  if (t.i1 < 0 || t.v1 < thr) return;
  floor = std::min(floor, floor_[v]);
  if (is_leaf(v)) {
    const LeafView L = leaf_view(v - n_leaves_);
    for (int64_t r = 0; r < cap_; ++r)
      if (L.m[r] >= 0 && L.m[r] >= thr)
        out.push_back({L.row[r], L.m[r], std::min(L.m2[r], floor), L.assign[r]});
    return;
  }
  band_node(2 * v, thr, floor, out);
  band_node(2 * v + 1, thr, floor, out);
}

void KdTreeEngine::band(double thr, std::vector<BandMember>& out) {
  if (any_stale_) {
    refresh(1);
    any_stale_ = false;
  }
  band_node(1, thr, kInf, out);
}

double KdTreeEngine::top_candidates(int64_t T, std::vector<BandMember>& out) {
  // every point's value is current (only the nodes' best two may be stale):
  // all live points with their floors applied, then the T best
  std::vector<BandMember> all;
  band(-0.5, all);  // live values are >= 0
  std::vector<std::pair<double, int64_t>> pool(all.size());  // (value, row)
  std::vector<std::pair<int64_t, size_t>> by_row(all.size());  // row -> its member
  for (size_t j = 0; j < all.size(); ++j) {
    pool[j] = {all[j].m, all[j].index};
    by_row[j] = {all[j].index, j};
  }
  std::sort(by_row.begin(), by_row.end());
  return select_top<double>(pool, T, [&](int64_t row) {
    return all[std::lower_bound(by_row.begin(), by_row.end(), std::make_pair(row, size_t{0}))->second];
  }, out);
}

void KdTreeEngine::export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                                int64_t centers) const {
  for (int64_t i = 0; i < n_; ++i) {  // centers and picks
    m[i] = -1;
    m2[i] = -1;
    assign[i] = -1;
    fresh[i] = centers;
  }
  std::vector<BandMember> all;
  const_cast<KdTreeEngine*>(this)->band(-0.5, all);  // every live point, floors applied
  for (const BandMember& b : all) {
    m[b.index] = b.m;
    m2[b.index] = b.m2;
    assign[b.index] = b.assign;
  }
}

}  // namespace cpu
}  // namespace svp
