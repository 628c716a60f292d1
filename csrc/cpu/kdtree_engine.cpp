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
  stride_ = D_ + kState;
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
  const int64_t n = n_, D = D_, S = stride_;
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

  // one record per point in tree order: coordinates, m, m2, assign, row
  rec_.resize(static_cast<size_t>(n * S));
  for (int64_t q = 0; q < n; ++q) {
    double* p = rec_.data() + q * S;
    std::memcpy(p, yb.data() + q * D, static_cast<size_t>(D) * sizeof(double));
    p[D] = kInf;
    p[D + 1] = kInf;
    set_bits(p + D + 2, -1);
    set_bits(p + D + 3, rows[q]);
  }
  yb = std::vector<double>();
  where_.resize(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) where_[rows[q]] = q;

  const int64_t nodes = 2 * n_leaves_;
  lo_.assign(static_cast<size_t>(nodes), 0);
  hi_.assign(static_cast<size_t>(nodes), 0);
  box_.assign(static_cast<size_t>(nodes * 2 * D), 0.0);
  top_.assign(static_cast<size_t>(nodes), Top2());
  floor_.assign(static_cast<size_t>(nodes), kInf);
  stale_.assign(static_cast<size_t>(nodes), 0);
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
  int64_t widest_leaf = 1;
  for (int64_t v = nodes - 1; v >= 1; --v) {
    double* b = box_.data() + v * 2 * D;
    if (is_leaf(v)) {
      for (int64_t j = 0; j < D; ++j) {
        double a = kInf, c = -kInf;
        for (int64_t q = lo_[v]; q < hi_[v]; ++q) {
          a = std::min(a, rec_[q * S + j]);
          c = std::max(c, rec_[q * S + j]);
        }
        b[j] = a;
        b[D + j] = c;
      }
      leaf_top(v);
      widest_leaf = std::max(widest_leaf, hi_[v] - lo_[v]);
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
  d_.resize(static_cast<size_t>(widest_leaf));
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

void KdTreeEngine::leaf_top(int64_t v) {
  const int64_t S = stride_, D = D_;
  Top2 t;
  for (int64_t q = lo_[v]; q < hi_[v]; ++q) {
    const double* p = rec_.data() + q * S;
    if (p[D] >= 0) t.push(p[D], bits(p + D + 3));
  }
  top_[v] = t;
}

// The distances of a leaf's points to c, applied to their state; returns
// whether the leaf's best two changed. DD: D known at compile time (0: not).
template <int DD>
bool KdTreeEngine::apply_leaf(int64_t v, const double* c, int64_t ordinal) {
  const int64_t D = DD > 0 ? DD : D_;
  const int64_t S = DD > 0 ? DD + kState : stride_;
  const int64_t cnt = hi_[v] - lo_[v];
  double* rec = rec_.data() + lo_[v] * S;
  // all of the leaf's lines in flight at once: a leaf is a few dozen lines
  // that late in a run come from memory, not cache
  for (int64_t o = 0; o < cnt * S; o += 8) __builtin_prefetch(rec + o, 1);
  // min-distances only fall: the best two change only when a point at least
  // as high as the second best fell
  const double second = top_[v].v2;
  bool moved = false;
  int64_t live = 0;
  for (int64_t r = 0; r < cnt; ++r) {
    double* p = rec + r * S;
    double d = 0;
    for (int64_t j = 0; j < D; ++j) {
      const double t = p[j] - c[j];
      d += t * t;
    }
    double& m = p[D];
    double& m2 = p[D + 1];
    const double before = m;
    live += before >= 0;
    if (d < m2) {  // rare late in a run: the branch predicts well
      int64_t as = bits(p + D + 2);
      const bool nearer = take_center_distance(d, ordinal, m, m2, as);
      set_bits(p + D + 2, as);
      moved |= nearer & (before >= second);
    }
  }
  evals_ += live;  // as a scan counts: live points only
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
    const bool moved = apply_leaf<DD>(v, c, ordinal);
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
  const int64_t q = where_[row];
  rec_[q * stride_ + D_] = -1;
  int64_t v = 1;  // the leaf holding position q: walk down by the ranges
  while (!is_leaf(v)) v = q < hi_[2 * v] ? 2 * v : 2 * v + 1;
  for (; v >= 1 && !stale_[v]; v >>= 1) stale_[v] = 1;
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
    const int64_t S = stride_, D = D_;
    for (int64_t q = lo_[v]; q < hi_[v]; ++q) {
      const double* p = rec_.data() + q * S;
      if (p[D] >= 0 && p[D] >= thr)
        out.push_back({bits(p + D + 3), p[D], std::min(p[D + 1], floor), bits(p + D + 2)});
    }
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

}  // namespace cpu
}  // namespace svp
