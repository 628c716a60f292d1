#include "lazy_engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <type_traits>

namespace svp {
namespace cpu {

namespace {
constexpr int64_t kTile = 16;  // rows refreshed together (stay in L1)
}

template <typename Acc>
LazyEngine<Acc>::LazyEngine(const RowSource<Acc>& src, int num_threads)
    : src_(src), threads_(num_threads), screen_(src, num_threads) {
  n_ = src.X.rows;
  D_ = src.X.cols;
  direct_centers_ = std::is_same<Acc, float>::value && src.X.dtype == DType::f32 && !src.scale;
  m_.assign(static_cast<size_t>(n_), std::numeric_limits<Acc>::infinity());
  m2_.assign(static_cast<size_t>(n_), std::numeric_limits<Acc>::infinity());
  assign_.assign(static_cast<size_t>(n_), -1);
  last_.assign(static_cast<size_t>(n_), 0);
  active_.resize(static_cast<size_t>(n_));
  std::iota(active_.begin(), active_.end(), 0);
  in_active_.assign(static_cast<size_t>(n_), 1);
  theta_ = -std::numeric_limits<double>::infinity();
  // Active-set size: large enough that theta is lowered rarely (each lowering
  // refreshes a batch), small enough that keeping it fresh is cheap.
  target_ = std::max<int64_t>(256, n_ / 128);
  cbuf_.resize(static_cast<size_t>(D_ * std::max(1, threads_)));
}

template <typename Acc>
const Acc* LazyEngine<Acc>::center(int64_t j, Acc* buf) const {
  const CenterRef& c = centers_[static_cast<size_t>(j)];
  if (direct_centers_) return reinterpret_cast<const Acc*>(c.raw);
  src_.center(c, buf);
  return buf;
}

template <typename Acc>
void LazyEngine<Acc>::add_centers(const CenterRef* refs, const int64_t* ordinals, int64_t q) {
  const size_t row_bytes = static_cast<size_t>(D_) * dtype_size(src_.X.dtype);
  for (int64_t j = 0; j < q; ++j) {
    SVP_ASSERT(ordinals[j] == static_cast<int64_t>(centers_.size()));
    CenterRef c = refs[j];
    if (c.row < 0) {  // keep a copy: it is needed again when dormant points refresh
      remote_.emplace_back(c.raw, c.raw + row_bytes);
      c.raw = remote_.back().data();
    }
    centers_.push_back(c);
  }
  const int64_t K = static_cast<int64_t>(centers_.size());
  const int64_t na = static_cast<int64_t>(active_.size());
  const D2RowsFn<Acc> d2 = src_.d2();
  const MatrixView& X = src_.X;
  const int64_t D = D_;
  // centers of this batch, in the working space
  std::vector<Acc> cs(static_cast<size_t>(q * D));
  std::vector<const Acc*> cp(static_cast<size_t>(q));
  for (int64_t j = 0; j < q; ++j) {
    cp[j] = center(K - q + j, cs.data() + j * D);
  }
  int64_t evals = 0;
  const int64_t chunk = 64;
  // A parallel region only for large updates: this runs once a pick, and on
  // a machine shared with other work every region waits for a descheduled
  // thread (a refresh and an update a pick took 2-3x one thread's time there).
#pragma omp parallel num_threads(threads_) reduction(+ : evals) if (na * q * D > (int64_t{1} << 22))
  {
    const char* ptrs[chunk];
    Acc sc[chunk], out[chunk];
    int64_t idx[chunk];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < na; b += chunk) {
      const int64_t e = std::min(na, b + chunk);
      int64_t live = 0;
      for (int64_t a = b; a < e; ++a) {
        const int64_t i = active_[a];
        if (m_[i] < Acc(0)) continue;
        ptrs[live] = X.row(i);
        if (src_.scale) sc[live] = src_.scale[i];
        idx[live++] = i;
      }
      for (int64_t j = 0; j < q; ++j) {
        d2(X.dtype, ptrs, src_.scale ? sc : nullptr, live, cp[j], D, out);
        for (int64_t r = 0; r < live; ++r) {
          const int64_t i = idx[r];
          take_center_distance(out[r], ordinals[j], m_[i], m2_[i], assign_[i]);
        }
      }
      evals += live * q;
    }
  }
  evals_ += evals;
  compact();
}

template <typename Acc>
void LazyEngine<Acc>::compact() {
  // drop picked points and those below theta (they turn dormant, fresh now)
  const int64_t K = static_cast<int64_t>(centers_.size());
  size_t w = 0;
  for (size_t a = 0; a < active_.size(); ++a) {
    const int64_t i = active_[a];
    const double v = static_cast<double>(m_[i]);
    if (v >= 0 && v >= theta_) {
      active_[w++] = i;
    } else {
      in_active_[i] = 0;
      last_[i] = K;
      if (v >= 0) push_dormant(i);
    }
  }
  active_.resize(w);
  recompute_top();
}

// The dormant rows by stale value, a max-heap: a dormant row's value does not
// change until it is refreshed, which takes it off the heap, so each dormant
// row has one entry; picked rows (m < 0) are dropped as they come up. (A scan
// of all N rows for them in every lowering of theta took 8% of a run.)
template <typename Acc>
void LazyEngine<Acc>::push_dormant(int64_t i) {
  heap_.push_back({m_[i], i});
  std::push_heap(heap_.begin(), heap_.end());
}

template <typename Acc>
bool LazyEngine<Acc>::pop_dormant(std::pair<Acc, int64_t>* out) {
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end());
    const std::pair<Acc, int64_t> e = heap_.back();
    heap_.pop_back();
    if (!in_active_[e.second] && m_[e.second] >= Acc(0)) {
      *out = e;
      return true;
    }
  }
  return false;
}

template <typename Acc>
bool LazyEngine<Acc>::has_dormant() {
  while (!heap_.empty()) {
    const int64_t i = heap_.front().second;
    if (!in_active_[i] && m_[i] >= Acc(0)) return true;
    std::pop_heap(heap_.begin(), heap_.end());
    heap_.pop_back();
  }
  return false;
}

template <typename Acc>
void LazyEngine<Acc>::rebuild_dormant() {
  heap_.clear();
  for (int64_t i = 0; i < n_; ++i)
    if (!in_active_[i] && m_[i] >= Acc(0)) heap_.push_back({m_[i], i});
  std::make_heap(heap_.begin(), heap_.end());
}

template <typename Acc>
void LazyEngine<Acc>::recompute_top() {
  top_ = Top2();
  for (int64_t i : active_) top_.push(static_cast<double>(m_[i]), i);
}

template <typename Acc>
Top2 LazyEngine<Acc>::top2(const ErrorModel& err) {
  for (;;) {
    if (!active_.empty()) {
      const double M = top_.v1;
      const double lim = M - 2.0 * err.E(M);
      if (theta_ <= lim) {
        raise_theta(lim);
        return top_;
      }
    }
    const size_t before = active_.size();
    const double theta_before = theta_;
    lower_theta(err);
    if (active_.size() == before && theta_ == theta_before) return top_;  // nothing left
  }
}

template <typename Acc>
void LazyEngine<Acc>::raise_theta(double limit) {
  const int64_t na = static_cast<int64_t>(active_.size());
  if (na <= 2 * target_) return;
  std::vector<Acc> vals(static_cast<size_t>(na));
  for (int64_t a = 0; a < na; ++a) vals[a] = m_[active_[a]];
  std::nth_element(vals.begin(), vals.begin() + (target_ - 1), vals.end(), std::greater<Acc>());
  const double t = std::min(limit, static_cast<double>(vals[target_ - 1]));
  if (t > theta_) {
    theta_ = t;
    compact();
  }
}

template <typename Acc>
void LazyEngine<Acc>::lower_theta(const ErrorModel& err) {
  const double lim = active_.empty() ? std::numeric_limits<double>::infinity()
                                     : top_.v1 - 2.0 * err.E(top_.v1);
  // the target_ largest stale values of the dormant rows (heap order: by
  // value, then index), then every other at or above the new theta
  std::vector<int64_t> rows;
  std::pair<Acc, int64_t> e;
  double tth = 0;
  while (static_cast<int64_t>(rows.size()) < target_ && pop_dormant(&e)) {
    rows.push_back(e.second);
    tth = static_cast<double>(e.first);
  }
  if (rows.empty()) {
    theta_ = std::min(theta_, lim);
    return;
  }
  // every dormant row taken: nothing is left below theta
  double new_theta = has_dormant() ? tth : -std::numeric_limits<double>::infinity();
  new_theta = std::min(new_theta, lim);
  while (has_dormant() && static_cast<double>(heap_.front().first) >= new_theta) {
    pop_dormant(&e);
    rows.push_back(e.second);
  }
  refresh(rows);
  theta_ = new_theta;
  for (int64_t i : rows) {
    if (static_cast<double>(m_[i]) >= theta_) {
      in_active_[i] = 1;
      active_.push_back(i);
    } else {
      push_dormant(i);  // refreshed, still below theta
    }
  }
  std::sort(active_.begin(), active_.end());
  recompute_top();
}

template <typename Acc>
void LazyEngine<Acc>::refresh(std::vector<int64_t>& rows) {
  const int64_t K = static_cast<int64_t>(centers_.size());
  // tiles of rows that have seen the same centers: sort by last refresh
  std::sort(rows.begin(), rows.end(),
            [&](int64_t a, int64_t b) { return last_[a] < last_[b] || (last_[a] == last_[b] && a < b); });
  const int64_t nr = static_cast<int64_t>(rows.size());
  if (nr > 0 && screen_.worth(K - last_[rows[0]])) {
    refresh_product(rows);
    return;
  }
  const D2RowsFn<Acc> d2 = src_.d2();
  const MatrixView& X = src_.X;
  const int64_t D = D_;
  // float32 accumulation, Euclidean, 32- or 16-bit rows (the centers are rows
  // of the same dtype, read in place): the register-blocked tile
  const bool use_tile = std::is_same<Acc, float>::value && !src_.scale &&
                        (X.dtype == DType::f32 || X.dtype == DType::f16 || X.dtype == DType::bf16);
  const RefreshTileFn tile_fn = src_.k->refresh_tile;
  int64_t evals = 0;
#pragma omp parallel num_threads(threads_) reduction(+ : evals)
  {
    const int tid = omp_get_thread_num();
    Acc* buf = cbuf_.data() + static_cast<size_t>(tid) * D;
    const char* ptrs[kTile];
    Acc sc[kTile], out[kTile];
    std::vector<const char*> cptrs;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < nr; b += kTile) {
      const int64_t cnt = std::min(kTile, nr - b);
      const int64_t* tile = rows.data() + b;
      for (int64_t r = 0; r < cnt; ++r) {
        ptrs[r] = X.row(tile[r]);
        if (src_.scale) sc[r] = src_.scale[tile[r]];
      }
      const int64_t j0 = last_[tile[0]];
      if (use_tile) {
        // float32 Euclidean: the register-blocked kernel, on local copies of
        // the tile's state
        float tm[kTile], tm2[kTile];
        int64_t ta[kTile], tl[kTile];
        for (int64_t r = 0; r < cnt; ++r) {
          const int64_t i = tile[r];
          tm[r] = static_cast<float>(m_[i]);
          tm2[r] = static_cast<float>(m2_[i]);
          ta[r] = assign_[i];
          tl[r] = last_[i];
        }
        cptrs.resize(static_cast<size_t>(K - j0));
        for (int64_t j = j0; j < K; ++j) cptrs[static_cast<size_t>(j - j0)] = centers_[static_cast<size_t>(j)].raw;
        tile_fn(X.dtype, ptrs, cnt, cptrs.data(), j0, K - j0, D, tl, tm, tm2, ta);
        for (int64_t r = 0; r < cnt; ++r) {
          const int64_t i = tile[r];
          m_[i] = static_cast<Acc>(tm[r]);
          m2_[i] = static_cast<Acc>(tm2[r]);
          assign_[i] = ta[r];
          last_[i] = K;
        }
        evals += cnt * (K - j0);
        continue;
      }
      for (int64_t j = j0; j < K; ++j) {
        const Acc* c = center(j, buf);
        d2(X.dtype, ptrs, src_.scale ? sc : nullptr, cnt, c, D, out);
        for (int64_t r = 0; r < cnt; ++r) {
          const int64_t i = tile[r];
          if (last_[i] > j) continue;  // already has this center
          take_center_distance(out[r], j, m_[i], m2_[i], assign_[i]);
        }
      }
      evals += cnt * (K - j0);
      for (int64_t r = 0; r < cnt; ++r) last_[tile[r]] = K;
    }
  }
  evals_ += evals;
  refresh_evals_ += evals;
}

// The refresh as a blocked matrix product (product_screen.h): tiles of rows
// (sorted by their last refresh, so a tile's rows lack about the same
// centers) are shared out to the threads, one parallel region a refresh (a
// barrier per block of centers cost far more than the blocks on a busy
// machine); each tile goes through the centers it lacks center_block at a
// time, in order.
// Blocks are aligned to multiples of center_block and kept converted to the
// working space across refreshes (block_of), the newest first, up to
// kBlockCacheBytes; a tile converts an older block it needs into its own
// buffer.
constexpr int64_t kBlockCacheBytes = int64_t{64} << 20;

template <typename Acc>
const Acc* LazyEngine<Acc>::block_of(int64_t b, int64_t cb, int64_t upto) {
  const int64_t D = D_;
  const int64_t bytes = cb * D * static_cast<int64_t>(sizeof(Acc));
  if (cb != block_size_) {  // the tuning changed: start over
    blocks_.clear();
    block_bytes_ = 0;
    block_size_ = cb;
  }
  if (static_cast<int64_t>(blocks_.size()) <= b) blocks_.resize(static_cast<size_t>(b + 1));
  CenterBlock& B = blocks_[static_cast<size_t>(b)];
  if (B.v.empty()) {
    // the oldest blocks go first: dormant rows that far behind are rare
    for (size_t o = 0; o < blocks_.size() && block_bytes_ + bytes > kBlockCacheBytes; ++o) {
      if (static_cast<int64_t>(o) >= b || blocks_[o].v.empty()) continue;
      std::vector<Acc>().swap(blocks_[o].v);
      blocks_[o].n = 0;
      block_bytes_ -= bytes;
    }
    if (block_bytes_ + bytes > kBlockCacheBytes) return nullptr;  // newer blocks fill it
    B.v.resize(static_cast<size_t>(cb * D));
    B.n = 0;
    block_bytes_ += bytes;
  }
  const int64_t lo = b * cb + B.n, hi = upto;
  if (hi > lo) {
#pragma omp parallel for num_threads(threads_) schedule(static) if ((hi - lo) * D > (1 << 18))
    for (int64_t j = lo; j < hi; ++j)
      src_.center(centers_[static_cast<size_t>(j)], B.v.data() + (j - b * cb) * D);
    B.n = hi - b * cb;
  }
  return B.v.data();
}

template <typename Acc>
void LazyEngine<Acc>::refresh_product(const std::vector<int64_t>& rows) {
  const int64_t K = static_cast<int64_t>(centers_.size());
  const int64_t D = D_;
  const MatrixView& X = src_.X;
  const int64_t cb = product_tuning().center_block;
  constexpr int64_t kRows = 48;  // rows per tile
  screen_.prepare();
  const int64_t nr = static_cast<int64_t>(rows.size());
  const int64_t jmin = last_[rows[0]];
  const int64_t bfirst = jmin / cb, blast = (K - 1) / cb;
  // the blocks this refresh needs, newest first, as far as the cache holds them
  std::vector<const Acc*> bptr(static_cast<size_t>(blast - bfirst + 1), nullptr);
  for (int64_t b = blast; b >= bfirst; --b) {
    bptr[static_cast<size_t>(b - bfirst)] = block_of(b, cb, std::min(K, (b + 1) * cb));
    if (!bptr[static_cast<size_t>(b - bfirst)]) break;
  }
  // the screen's facts of the centers (each computed once) and their ordinals
  cfacts_.resize(static_cast<size_t>(2 * K), std::numeric_limits<double>::quiet_NaN());
  for (int64_t j = jmin; j < K; ++j)
    if (std::isnan(cfacts_[static_cast<size_t>(2 * j)]))
      screen_.center_facts(&centers_[static_cast<size_t>(j)], 1, cfacts_.data() + 2 * j);
  while (static_cast<int64_t>(ordinals_.size()) < K)
    ordinals_.push_back(static_cast<int64_t>(ordinals_.size()));
  const double* cf = cfacts_.data();
  const int64_t* ords = ordinals_.data();
  scratch_.resize(static_cast<size_t>(std::max(threads_, 1)));
  int64_t evals = 0, recomputes = 0;
  // Tiles of at most kRows rows, fewer where the rows lack many centers, so
  // that no tile holds more than an eighth of a thread's share of the work:
  // the oldest rows come first and lack the most, and one tile of them could
  // otherwise keep one thread busy while the other waits. At least 6 rows a
  // tile (the kernel's block) unless the rows run out.
  double work = 0;
  for (int64_t i : rows) work += static_cast<double>(K - last_[i]);
  const double cap = work / (8.0 * std::max(threads_, 1));
  std::vector<int64_t> tiles{0};
  while (tiles.back() < nr) {
    const int64_t t0 = tiles.back();
    int64_t t1 = t0;
    double w = 0;
    while (t1 < nr && t1 - t0 < kRows && (t1 - t0 < 6 || w + static_cast<double>(K - last_[rows[t0]]) <= cap)) {
      w += static_cast<double>(K - last_[rows[t0]]);  // each row of the tile runs from its first's
      ++t1;
    }
    tiles.push_back(t1);
  }
  const int64_t ntiles = static_cast<int64_t>(tiles.size()) - 1;
  work *= static_cast<double>(D);
  // The tiles to threads, the largest first to the least loaded. Each thread
  // then goes through the blocks in order and applies each to all of its
  // tiles that lack some of it: a block is read from memory once a thread
  // and stays in its L2 across the tiles, and no thread waits on another
  // before the end.
  const int nt = work > (1 << 24) ? std::max(threads_, 1) : 1;
  std::vector<double> tw(static_cast<size_t>(ntiles));
  std::vector<int64_t> order(static_cast<size_t>(ntiles));
  for (int64_t t = 0; t < ntiles; ++t) {
    tw[t] = static_cast<double>(tiles[t + 1] - tiles[t]) *
            static_cast<double>(K - last_[rows[tiles[t]]]);
    order[t] = t;
  }
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return tw[x] > tw[y]; });
  std::vector<std::vector<int64_t>> mine(static_cast<size_t>(nt));
  std::vector<double> load(static_cast<size_t>(nt), 0.0);
  for (int64_t t : order) {
    const size_t j = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    mine[j].push_back(t);
    load[j] += tw[t];
  }
#pragma omp parallel num_threads(nt) reduction(+ : evals, recomputes)
  {
    const std::vector<int64_t>& my = mine[static_cast<size_t>(omp_get_thread_num())];
    typename ProductScreen<Acc>::Scratch& scratch =
        scratch_[static_cast<size_t>(omp_get_thread_num())];
    // the state of this thread's rows, tile after tile
    std::vector<int64_t> off{0};
    for (int64_t t : my) off.push_back(off.back() + tiles[t + 1] - tiles[t]);
    const size_t R = static_cast<size_t>(off.back());
    std::vector<const char*> ptrs(R);
    std::vector<Acc> sc(src_.scale ? R : 0), tm(R), tm2(R);
    std::vector<int64_t> ids(R), ta(R), first(R);
    int64_t bmin = blast + 1;
    for (size_t k = 0; k < my.size(); ++k) {
      for (int64_t r = 0; r < off[k + 1] - off[k]; ++r) {
        const int64_t i = rows[tiles[my[k]] + r];
        const size_t q = static_cast<size_t>(off[k] + r);
        ids[q] = i;
        ptrs[q] = X.row(i);
        if (src_.scale) sc[q] = src_.scale[i];
        tm[q] = m_[i];
        tm2[q] = m2_[i];
        ta[q] = assign_[i];
        first[q] = last_[i];
      }
      bmin = std::min(bmin, first[static_cast<size_t>(off[k])] / cb);
    }
    std::vector<Acc> own;  // an older block than the cache holds
    for (int64_t b = bmin; b <= blast; ++b) {
      const int64_t b0 = b * cb, b1 = std::min(K, b0 + cb);
      const Acc* cvec = bptr[static_cast<size_t>(b - bfirst)];
      for (size_t k = 0; k < my.size(); ++k) {
        const size_t o = static_cast<size_t>(off[k]);
        const int64_t cnt = off[k + 1] - off[k];
        if (first[o] >= b1) continue;  // the tile has this block already
        // the tile's rows that lack a center of this block (last < b1): a prefix
        int64_t np = cnt;
        while (np > 0 && first[o + static_cast<size_t>(np - 1)] >= b1) --np;
        const int64_t c0 = std::max<int64_t>(0, first[o] - b0);
        if (!cvec) {  // converted once a thread, for the tiles that need it
          own.assign(static_cast<size_t>(cb * D), Acc(0));
          for (int64_t j = b0; j < b1; ++j)
            src_.center(centers_[static_cast<size_t>(j)], own.data() + (j - b0) * D);
          cvec = own.data();
        }
        recomputes += screen_.apply(ids.data() + o, ptrs.data() + o,
                                    src_.scale ? sc.data() + o : nullptr, np, cvec + c0 * D, D,
                                    cf + 2 * (b0 + c0), b1 - b0 - c0, ords + b0 + c0,
                                    first.data() + o, tm.data() + o, tm2.data() + o,
                                    ta.data() + o, scratch);
        evals += np * (b1 - b0 - c0);
      }
    }
    for (size_t q = 0; q < R; ++q) {
      m_[ids[q]] = tm[q];
      m2_[ids[q]] = tm2[q];
      assign_[ids[q]] = ta[q];
    }
  }
  for (int64_t i : rows) last_[i] = K;
  evals_ += evals;
  refresh_evals_ += evals;
  product_pairs_ += evals;
  product_recomputes_ += recomputes;
}

template <typename Acc>
void LazyEngine<Acc>::band(double thr, std::vector<BandMember>& out) {
  // dormant points are below theta <= thr (top2's guarantee)
  for (int64_t i : active_) {
    const double v = static_cast<double>(m_[i]);
    if (v >= 0 && v >= thr) out.push_back({i, v, static_cast<double>(m2_[i]), assign_[i]});
  }
}

template <typename Acc>
double LazyEngine<Acc>::top_candidates(int64_t T, std::vector<BandMember>& out) {
  // The active points are current and the dormant ones hold stale values
  // below theta, which bound their current ones: the T best are the active
  // set's once it holds more than T points, and theta bounds the rest.
  // Lower theta (refreshing dormant points in tiles) until it does.
  const ErrorModel none{};  // lower_theta's band limit: none, only the count matters
  while (static_cast<int64_t>(active_.size()) <= T) {
    const size_t before = active_.size();
    const double theta_before = theta_;
    lower_theta(none);
    if (active_.size() == before && theta_ == theta_before) break;  // nothing dormant is left
  }
  std::vector<std::pair<double, int64_t>> pool;
  pool.reserve(active_.size());
  for (int64_t i : active_)
    if (m_[i] >= Acc(0)) pool.push_back({static_cast<double>(m_[i]), i});
  double outside = select_top<Acc>(pool, T, [&](int64_t i) {
    return BandMember{i, static_cast<double>(m_[i]), static_cast<double>(m2_[i]), assign_[i]};
  }, out);
  // dormant live points are below theta
  if (has_dormant()) outside = std::max(outside, theta_);
  return outside;
}

template <typename Acc>
void LazyEngine<Acc>::export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                                   int64_t centers) const {
  SVP_ASSERT(centers == static_cast<int64_t>(centers_.size()));
  for (int64_t i = 0; i < n_; ++i) {
    m[i] = static_cast<double>(m_[i]);
    m2[i] = static_cast<double>(m2_[i]);
    assign[i] = assign_[i];
    fresh[i] = last_[i];
  }
}

template <typename Acc>
bool LazyEngine<Acc>::adopt_state(const double* m, const double* m2, const int64_t* assign,
                                  const int64_t* fresh, int64_t centers,
                                  const int64_t* center_rows) {
  centers_.clear();
  remote_.clear();
  for (int64_t j = 0; j < centers; ++j) centers_.push_back(src_.ref(center_rows[j]));
  cfacts_.clear();
  blocks_.clear();
  block_bytes_ = 0;
  double max_stale = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n_; ++i) {
    m_[i] = static_cast<Acc>(m[i]);
    m2_[i] = static_cast<Acc>(m2[i]);
    assign_[i] = assign[i];
    last_[i] = std::min<int64_t>(fresh[i], centers);
    if (m_[i] >= Acc(0) && last_[i] < centers) max_stale = std::max(max_stale, m[i]);
  }
  // dormant points must lie below theta: just above the largest stale value
  theta_ = max_stale > -std::numeric_limits<double>::infinity()
               ? std::nextafter(max_stale, std::numeric_limits<double>::infinity())
               : -std::numeric_limits<double>::infinity();
  active_.clear();
  for (int64_t i = 0; i < n_; ++i) {
    in_active_[i] = m_[i] >= Acc(0) && last_[i] == centers && static_cast<double>(m_[i]) >= theta_;
    if (in_active_[i]) active_.push_back(i);
  }
  rebuild_dormant();
  recompute_top();
  return true;
}

template <typename Acc>
void LazyEngine<Acc>::adopt(std::vector<Acc>&& m, std::vector<Acc>&& m2,
                            std::vector<int64_t>&& assign, int64_t K, int64_t evals) {
  m_ = std::move(m);
  m2_ = std::move(m2);
  assign_ = std::move(assign);
  last_.assign(static_cast<size_t>(n_), K);
  centers_.assign(static_cast<size_t>(K), CenterRef{-1, nullptr});  // never read again
  cfacts_.clear();
  blocks_.clear();
  block_bytes_ = 0;
  active_.clear();
  for (int64_t i = 0; i < n_; ++i) {
    in_active_[i] = m_[i] >= Acc(0);
    if (in_active_[i]) active_.push_back(i);
  }
  heap_.clear();
  theta_ = -std::numeric_limits<double>::infinity();
  evals_ = evals;
  recompute_top();
}

template class LazyEngine<float>;
template class LazyEngine<double>;

}  // namespace cpu
}  // namespace svp
