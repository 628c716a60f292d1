// The CPU k-center driver: argument checks, one validation pass, the choice
// of arithmetic, and the picking loop with its certified argmax.
//
// Certified argmax. The engines compute squared distances in float32 (or
// float64) with an a-priori error bound |v - exact| <= E(v) (ErrorModel). At
// each step, let M be the largest computed value. The exact winner's computed
// value is at least M - 2E(M), so when no other live point reaches that band
// the computed argmax is the exact one. Otherwise the band's members are
// compared in float64: each member's distance to the center that gave its
// value is recomputed in float64, and a full float64 minimum over all centers
// is needed only when a second center was nearly as close (tracked as m2).
// Picks therefore never depend on summation order, SIMD width, thread count,
// method or backend: they are the picks of float64 arithmetic.
//
// Error bound. Euclidean, float32 accumulation of D terms (x_j - c_j)^2 with
// x_j, c_j exact in float32: each difference is rounded once, each square-add
// once (FMA), and any summation order of D non-negative terms errs by at most
// gamma_{D-1} times the sum: |v - exact| <= ((D + 2) u) v with u = 2^-24, plus
// at most (D + 2) 2^-149 from underflow. Cosine works on rows scaled by 1/||x||
// (computed in float64, rounded once), which adds an error of at most
// 4 u sqrt(v) + 4 u^2 relative to unit-norm rows. The model doubles every term.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "batch_pass.h"
#include "engine.h"
#include "prepare.h"
#include "kdtree_engine.h"
#include "kernels.h"
#include "lazy_engine.h"
#include "pruned_engine.h"
#include "scan_engine.h"
#include "svp/kcenter.h"

namespace svp {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int resolve_threads(int requested) {
  return requested > 0 ? requested : std::max(1, omp_get_max_threads());
}

// The picking loop, generic over the accumulation type.
template <typename Acc>
void run(const MatrixView& X, const KCenterOptions& opt, const cpu::KernelTable& k,
         int threads, const double* norm64, int64_t* picks, double* radii,
         KCenterStats* st, Clock::time_point t_setup) {
  const int64_t n = X.rows, D = X.cols;
  std::vector<Acc> scale;
  cpu::RowSource<Acc> src;
  src.X = X;
  src.k = &k;
  if (norm64) {
    scale.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) scale[i] = static_cast<Acc>(1.0 / norm64[i]);
    src.scale = scale.data();
    src.norm64 = norm64;
  }
  const bool f64 = std::is_same<Acc, double>::value;
  const cpu::ErrorModel tie = svp::exact_tie_model(opt.metric, D);
  // the band model: fast-path error plus half the float64 tie tolerance
  const cpu::ErrorModel err = svp::band_model(svp::error_model(f64, opt.metric, D), tie);
  // float64 arithmetic for the exact comparisons
  cpu::RowSource<double> exact = {X, &k, nullptr, norm64};

  Poller poll(opt.progress, opt.poll_interval);
  std::unique_ptr<cpu::Engine<Acc>> engine;
  if (opt.method == KCenterMethod::pruned) {
    engine.reset(new cpu::PrunedEngine<Acc>(src, opt.cells, threads, opt.fallback_fraction,
                                            [&](int64_t done) { poll(done, picks); }));
    st->method_used = static_cast<int>(KCenterMethod::pruned);
  } else if (opt.method == KCenterMethod::kdtree) {
    // the driver runs this engine in float64 (see kcenter_cpu)
    if constexpr (std::is_same<Acc, double>::value) engine.reset(new cpu::KdTreeEngine(src, threads));
    SVP_ASSERT(engine);
    st->method_used = static_cast<int>(KCenterMethod::kdtree);
  } else if (opt.method == KCenterMethod::lazy) {
    engine.reset(new cpu::LazyEngine<Acc>(src, threads));
    st->method_used = static_cast<int>(KCenterMethod::lazy);
  } else {
    engine.reset(new cpu::ScanEngine<Acc>(src, threads));
    st->method_used = static_cast<int>(opt.method == KCenterMethod::batched ? KCenterMethod::batched
                                                                           : KCenterMethod::scan);
  }
  st->setup_seconds = seconds_since(t_setup);
  Clock::time_point t_select = Clock::now();

  std::vector<int64_t> centers;  // ordinal -> row
  centers.reserve(static_cast<size_t>(opt.n_selected + opt.budget));
  std::vector<int64_t> ords;
  std::vector<cpu::CenterRef> refs;

  int64_t live = n;  // points that are neither centers nor picked
  // apply centers[first..) to the engine (they are in the center list already)
  auto apply_centers = [&](size_t first) {
    const int64_t q = static_cast<int64_t>(centers.size() - first);
    ords.resize(static_cast<size_t>(q));
    refs.resize(static_cast<size_t>(q));
    for (int64_t j = 0; j < q; ++j) {
      ords[j] = static_cast<int64_t>(first) + j;
      refs[j] = src.ref(centers[first + static_cast<size_t>(j)]);
    }
    engine->add_centers(refs.data(), ords.data(), q);
  };
  auto add_batch = [&](const int64_t* rows, int64_t q) {
    st->scan_evals += live * q;
    const size_t first = centers.size();
    centers.insert(centers.end(), rows, rows + q);
    apply_centers(first);
  };

  // radius (squared, working space) of the previous pick: reported radii are
  // made non-increasing, as exact ones are (rounding could break that by ulps)
  double prev_radius = opt.prev_radius;
  int64_t t0 = 0;
  if (opt.resume) {
    // a checkpoint: the state after its centers (already_selected, in ordinal
    // order); an engine that keeps every row current cannot take a state with
    // stale rows (the lazy engine's): the lazy engine continues it, with the
    // same picks
    const KCenterState& rs = *opt.resume;
    centers.assign(opt.already_selected, opt.already_selected + opt.n_selected);
    if (!engine->adopt_state(rs.m, rs.m2, rs.assign, rs.fresh, rs.centers, centers.data())) {
      engine.reset(new cpu::LazyEngine<Acc>(src, threads));
      SVP_ASSERT(engine->adopt_state(rs.m, rs.m2, rs.assign, rs.fresh, rs.centers, centers.data()));
      st->method_used = static_cast<int>(KCenterMethod::lazy);
    }
    live -= opt.n_selected;
    prev_radius = rs.prev_radius;
  } else if (opt.n_selected > 0) {
    for (int64_t j = 0; j < opt.n_selected; ++j) engine->exclude(opt.already_selected[j]);
    live -= opt.n_selected;
    const int64_t batch = 16;  // centers per pass: rows stay in cache across them
    for (int64_t j = 0; j < opt.n_selected; j += batch) {
      poll(0, picks);
      add_batch(opt.already_selected + j, std::min(batch, opt.n_selected - j));
    }
  } else {
    picks[0] = opt.start;
    if (radii) radii[0] = std::numeric_limits<double>::infinity();
    engine->exclude(opt.start);
    --live;
    if (opt.budget > 1) add_batch(&opt.start, 1);
    t0 = 1;
  }

  // The float64 answers of a certified decision (the points are rows of X,
  // the centers the rows in `centers`, the full minimum the engine's, which
  // may skip centers it knows cannot be nearer), and what the batched
  // driver's passes need besides (batch_pass.h).
  struct Host final : cpu::PassHost<Acc> {
    const MatrixView* X;
    const cpu::KernelTable* k;
    const double* norm64;
    const cpu::RowSource<Acc>* src;
    const cpu::RowSource<double>* exact;
    const std::vector<int64_t>* centers;
    cpu::Engine<Acc>* engine;
    int threads;
    const std::vector<cpu::BandMember>* cand = nullptr;  // the pass's candidates
    std::function<void(int64_t, double)> take;            // the pass's next pick
    void point64(int64_t index, double* out) override { exact->center64(index, out); }
    double center_d2(const double* y, int64_t ordinal) override {
      double out;
      const int64_t c = (*centers)[static_cast<size_t>(ordinal)];
      cpu::exact_d2_rows(*X, *k, norm64, &c, 1, y, &out);
      return out;
    }
    double min_over_centers(const double* y, double upper, int64_t* evals) override {
      return engine->exact_min(y, upper, centers->data(), static_cast<int64_t>(centers->size()),
                               threads, evals);
    }
    void pick_vector(size_t pos, Acc* out) override {
      src->center(src->ref((*cand)[pos].index), out);
    }
    void take_pick(int64_t index, double radius) override { take(index, radius); }
  };
  Host host;
  host.X = &X;
  host.k = &k;
  host.norm64 = norm64;
  host.src = &src;
  host.exact = &exact;
  host.centers = &centers;
  host.engine = engine.get();
  host.threads = threads;

  // a snapshot of the state between picks (checkpoints), at most every
  // snapshot_interval seconds, before the poll that lets the caller save it
  Clock::time_point last_snapshot = Clock::now();
  auto snapshot = [&](int64_t t) {
    KCenterState* s = opt.snapshot;
    if (!s || seconds_since(last_snapshot) < opt.snapshot_interval) return;
    last_snapshot = Clock::now();
    const int64_t K = static_cast<int64_t>(centers.size());
    engine->export_state(s->m, s->m2, s->assign, s->fresh, K);
    s->centers = K;
    s->prev_radius = prev_radius;
    s->picks = t;
    ++s->generation;
    if (s->header) {
      s->header[0] = static_cast<double>(s->generation);
      s->header[1] = static_cast<double>(t);
      s->header[2] = static_cast<double>(K);
      s->header[3] = prev_radius;
    }
  };
  auto commit = [&](int64_t t, int64_t winner, double radius) {
    picks[t] = winner;
    prev_radius = std::min(prev_radius, std::max(radius, 0.0));
    if (radii) radii[t] = opt.metric == Metric::cosine ? 0.5 * prev_radius : std::sqrt(prev_radius);
    engine->exclude(winner);
    --live;
  };

  // One plain step: the engine's best two, and its band when they are close.
  std::vector<cpu::BandMember> members;
  auto plain_step = [&](int64_t t) {
    const cpu::Top2 top = engine->top2(err);
    SVP_ASSERT(top.i1 >= 0);
    const double M = top.v1;
    int64_t winner = top.i1;
    double radius = M;
    // err is the band model: the band also spans the float64 tie tolerance,
    // so values the exact path would call ties are never decided fast
    const double thr = M - 2.0 * err.E(M);
    if (top.i2 >= 0 && top.v2 >= thr) {  // ambiguous: decide in float64
      members.clear();
      engine->band(thr, members);
      cpu::decide_band(members, err, tie, D, host, &winner, &radius, st);
    }
    commit(t, winner, radius);
    return winner;
  };

  if (opt.batch.candidates <= 0) {
    for (int64_t t = t0; t < opt.budget; ++t) {
      snapshot(t);
      poll(t, picks);
      const int64_t winner = plain_step(t);
      ++st->passes;
      if (t + 1 < opt.budget) add_batch(&winner, 1);
    }
  } else {
    // The batched driver (svp/kcenter.h, BatchOptions); the acceptance of a
    // pass is batch_pass.h's, shared with the distributed batched protocol.
    const int64_t T = opt.batch.candidates;
    const int64_t cap = opt.batch.max_picks > 0 ? opt.batch.max_picks : opt.budget;
    int64_t t = t0;
    std::vector<cpu::BandMember> cand;  // this pass's candidates
    std::vector<const char*> cand_rows;
    std::vector<Acc> cand_scale;
    host.cand = &cand;
    host.take = [&](int64_t winner, double radius) {
      commit(t, winner, radius);
      if (t + 1 < opt.budget) st->scan_evals += live;
      centers.push_back(winner);
      ++t;
    };
    cpu::PassAcceptor<Acc> acceptor(X.dtype, D, src.d2(), err, tie);
    while (t < opt.budget) {
      snapshot(t);
      poll(t, picks);
      cand.clear();
      const double B = engine->top_candidates(T, cand);
      ++st->passes;
      cand_rows.clear();
      cand_scale.clear();
      for (const cpu::BandMember& c : cand) {
        cand_rows.push_back(X.row(c.index));
        if (src.scale) cand_scale.push_back(src.scale[c.index]);
      }
      const size_t first = centers.size();
      const int64_t in_pass =
          acceptor.accept(cand, cand_rows.data(), src.scale ? cand_scale.data() : nullptr, B,
                          opt.budget - t, cap, static_cast<int64_t>(first), host, st);
      if (in_pass == 0) {  // not even the first pick is certified: one plain step
        const int64_t winner = plain_step(t);
        if (t + 1 < opt.budget) st->scan_evals += live;
        centers.push_back(winner);
        ++t;
      }
      if (t < opt.budget) apply_centers(first);
    }
  }
  poll(opt.budget, picks, true);
  st->distance_evals = engine->distance_evals() + st->candidate_evals;
  st->product_pairs = engine->product_pairs();
  st->product_recomputes = engine->product_recomputes();
  st->select_seconds = seconds_since(t_select);
  if (auto* pruned = dynamic_cast<cpu::PrunedEngine<Acc>*>(engine.get())) {
    st->fallback_step = pruned->fallback_step();
    st->projection_tests = pruned->projection_tests();
    st->projection_skips = pruned->projection_skips();
  }
}

}  // namespace

void kcenter_cpu(const MatrixView& X, const KCenterOptions& opt, int64_t* picks,
                 double* radii, KCenterStats* stats) {
  Clock::time_point t_setup = Clock::now();
  KCenterStats local;
  KCenterStats* st = stats ? stats : &local;
  *st = KCenterStats();
  const char* name = opt.arg_name ? opt.arg_name : "embeddings";
  const int64_t n = X.rows, D = X.cols;

  SVP_CHECK_ARG(n >= 1 && D >= 1, "%s must be a non-empty 2-D array, got shape (%lld, %lld)",
                name, (long long)n, (long long)D);
  SVP_CHECK_ARG(opt.budget >= 0, "budget must be >= 0, got %lld", (long long)opt.budget);
  SVP_CHECK_ARG(opt.n_selected >= 0 && opt.n_selected <= n,
                "already_selected has %lld entries for %lld points", (long long)opt.n_selected,
                (long long)n);
  {
    std::vector<char> seen(static_cast<size_t>(n), 0);
    for (int64_t j = 0; j < opt.n_selected; ++j) {
      const int64_t s = opt.already_selected[j];
      SVP_CHECK_ARG(s >= 0 && s < n, "already_selected[%lld] = %lld is out of range [0, %lld)",
                    (long long)j, (long long)s, (long long)n);
      SVP_CHECK_ARG(!seen[s], "already_selected holds index %lld twice", (long long)s);
      seen[s] = 1;
    }
  }
  SVP_CHECK_ARG(opt.budget <= n - opt.n_selected,
                "budget must be at most the number of points not already selected (%lld), got %lld",
                (long long)(n - opt.n_selected), (long long)opt.budget);
  if (opt.n_selected == 0 && opt.budget > 0)
    SVP_CHECK_ARG(opt.start >= 0 && opt.start < n, "start must be in [0, %lld), got %lld",
                  (long long)n, (long long)opt.start);
  SVP_CHECK_ARG(opt.batch.candidates >= 0 && opt.batch.max_picks >= 0,
                "batch_candidates and batch_max_picks must be >= 0, got %lld and %lld",
                (long long)opt.batch.candidates, (long long)opt.batch.max_picks);
  if (opt.method == KCenterMethod::pruned) {
    SVP_CHECK_ARG(opt.cells.cell_of != nullptr && opt.cells.n_cells >= 1,
                  "the pruned method needs a cell partition");
    for (int64_t i = 0; i < n; ++i)
      SVP_CHECK_ARG(opt.cells.cell_of[i] >= 0 && opt.cells.cell_of[i] < opt.cells.n_cells,
                    "cells[%lld] = %lld is out of range [0, %lld)", (long long)i,
                    (long long)opt.cells.cell_of[i], (long long)opt.cells.n_cells);
    const CellPartition& c = opt.cells;
    SVP_CHECK_ARG(c.proj_dims >= 0 && c.proj_dims <= 4096,
                  "the projection must have 0 to 4096 dimensions, got %lld", (long long)c.proj_dims);
    if (c.proj_dims > 0) {
      SVP_CHECK_ARG(c.proj && c.proj_err && c.resid_lo && c.resid_hi && c.proj_directions &&
                        c.proj_shift,
                    "the projection needs its coordinates, errors, residual bounds, directions "
                    "and shift");
      int exp2 = 0;
      SVP_CHECK_ARG(std::frexp(c.proj_scale, &exp2) == 0.5,
                    "the projection's scale must be a power of two, got %g", c.proj_scale);
      for (int64_t i = 0; i < n; ++i)  // NaN fails every comparison, so it is caught too
        SVP_CHECK_ARG(c.proj_err[i] >= 0 && c.resid_lo[i] >= 0 && c.resid_hi[i] >= c.resid_lo[i],
                      "projection bounds of row %lld are not a valid interval (err %g, "
                      "residual in [%g, %g])", (long long)i, c.proj_err[i], c.resid_lo[i],
                      c.resid_hi[i]);
    }
  }
  if (opt.budget == 0) return;

  KCenterOptions o = opt;
  // the batched method: the scan engine under the batched driver
  if (o.method == KCenterMethod::batched && o.batch.candidates == 0) o.batch.candidates = 256;
  const int threads = resolve_threads(o.num_threads);
  const cpu::KernelTable& k = cpu::kernels_or_throw(opt.simd);

  // One pass: NaN/Inf, magnitudes, and (cosine) the row norms.
  std::vector<double> norm64;
  if (opt.metric == Metric::cosine) norm64.resize(static_cast<size_t>(n));
  const cpu::MatrixFacts f = cpu::inspect(X, k, threads, norm64.empty() ? nullptr : norm64.data());
  cpu::check_facts(f, X, opt.metric, name);
  // The k-d tree engine works in float64: on a few coordinates it costs little
  // and leaves the certified argmax almost nothing to decide again. So does
  // the pruned engine with a projection bound: it reads so few rows that
  // float64 accumulation costs little more, while float32's band (2 E(M))
  // held about a thousand float64 re-checks in four steps of five on the
  // benchmarks' 200,000 x 2048 set (17.6 million float64 distances against
  // 1.6 million fast ones).
  const bool f64 = cpu::needs_float64(f, X.dtype, opt.metric, D) ||
                   opt.method == KCenterMethod::kdtree ||
                   (opt.method == KCenterMethod::pruned && opt.cells.proj_dims > 0);
  st->float64_accumulation = f64;
  const double* s64 = norm64.empty() ? nullptr : norm64.data();
  if (f64)
    run<double>(X, o, k, threads, s64, picks, radii, st, t_setup);
  else
    run<float>(X, o, k, threads, s64, picks, radii, st, t_setup);
}

CpuInfo cpu_info() {
  CpuInfo info;
  info.simd = cpu::kernels().name;
  info.simd_compiled = cpu::kernels_compiled();
  info.omp_max_threads = omp_get_max_threads();
  info.openmp = true;
  return info;
}

}  // namespace svp
