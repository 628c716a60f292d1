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
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "engine.h"
#include "prepare.h"
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
  std::vector<double> buf(static_cast<size_t>(D));
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

  int64_t t0 = 0;
  if (opt.n_selected > 0) {
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

  // float64 distance from a candidate (in the working space) to center row c
  auto exact_d2 = [&](const double* ycenter, int64_t c) {
    double out;
    cpu::exact_d2_rows(X, k, norm64, &c, 1, ycenter, &out);
    return out;
  };

  // The certified decision among the members of an ambiguous band (see the
  // top of this file): the winner and its squared radius, in float64.
  std::vector<std::pair<double, int64_t>> computed;
  auto decide = [&](const std::vector<cpu::BandMember>& members, int64_t* winner,
                    double* radius) {
    ++st->ambiguous_steps;
    struct Cand {
      int64_t index;
      double upper;  // float64 distance to its assigned center
      bool exact;    // upper is its exact min
    };
    std::vector<Cand> cands;
    cands.reserve(members.size());
    for (const cpu::BandMember& b : members) {
      exact.center64(b.index, buf.data());
      const double u = exact_d2(buf.data(), centers[static_cast<size_t>(b.assign)]);
      ++st->exact_distance_evals;
      // an exact zero cannot go lower; else a second center must be clearly farther
      const bool certain = u == 0.0 || b.m2 - b.m > 2.0 * err.E(b.m2);
      cands.push_back({b.index, u, certain});
    }
    std::sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
      return cpu::better(a.upper, a.index, b.upper, b.index);
    });
    // Exact values equal within float64's own error bound are ties (real
    // ties, e.g. symmetric integer data, land anywhere within it): the winner
    // is the lowest index among members within tie(mx) of the largest, mx.
    // Members come by decreasing upper bound; once one's upper bound is below
    // mx - tie(mx), no later member can reach the tie set.
    computed.clear();
    double mx = -std::numeric_limits<double>::infinity();
    for (const Cand& c : cands) {
      if (!computed.empty() && c.upper < mx - tie.E(mx)) break;
      double v = c.upper;
      if (!c.exact) {
        exact.center64(c.index, buf.data());
        v = engine->exact_min(buf.data(), c.upper, centers.data(),
                              static_cast<int64_t>(centers.size()), threads,
                              &st->exact_distance_evals);
      }
      computed.push_back({v, c.index});
      mx = std::max(mx, v);
    }
    SVP_ASSERT(!computed.empty());
    int64_t best_i = -1;
    for (const auto& p : computed)
      if (p.first >= mx - tie.E(mx) && (best_i < 0 || p.second < best_i)) best_i = p.second;
    *winner = best_i;
    *radius = mx;
  };

  // radius (squared, working space) of the previous pick: reported radii are
  // made non-increasing, as exact ones are (rounding could break that by ulps)
  double prev_radius = std::numeric_limits<double>::infinity();
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
      decide(members, &winner, &radius);
    }
    commit(t, winner, radius);
    return winner;
  };

  if (opt.batch.candidates <= 0) {
    for (int64_t t = t0; t < opt.budget; ++t) {
      poll(t, picks);
      const int64_t winner = plain_step(t);
      ++st->passes;
      if (t + 1 < opt.budget) add_batch(&winner, 1);
    }
  } else {
    // The batched driver (svp/kcenter.h, BatchOptions).
    const int64_t T = opt.batch.candidates;
    const int64_t cap = opt.batch.max_picks > 0 ? opt.batch.max_picks : opt.budget;
    const cpu::D2RowsFn<Acc> d2 = src.d2();
    std::vector<cpu::BandMember> cand;  // this pass's candidates, updated as it picks
    std::vector<Acc> cv, cm2;
    std::vector<char> gone;
    std::vector<Acc> cvec(static_cast<size_t>(D));
    std::vector<const char*> rows_p;
    std::vector<Acc> rows_s, dist;
    std::vector<int64_t> rows_j;
    int64_t t = t0;
    while (t < opt.budget) {
      poll(t, picks);
      cand.clear();
      const double B = engine->top_candidates(T, cand);
      ++st->passes;
      const size_t nc = cand.size();
      cv.resize(nc);
      cm2.resize(nc);
      gone.assign(nc, 0);
      for (size_t j = 0; j < nc; ++j) {
        cv[j] = static_cast<Acc>(cand[j].m);
        cm2[j] = static_cast<Acc>(cand[j].m2);
      }
      const size_t first = centers.size();
      int64_t in_pass = 0;
      while (t < opt.budget && in_pass < cap) {
        // the best two remaining candidates, by value then lower index
        int64_t j1 = -1, j2 = -1;
        for (size_t j = 0; j < nc; ++j) {
          if (gone[j]) continue;
          const int64_t jj = static_cast<int64_t>(j);
          if (j1 < 0 || cpu::better(cv[j], cand[j].index, cv[j1], cand[j1].index)) {
            j2 = j1;
            j1 = jj;
          } else if (j2 < 0 || cpu::better(cv[j], cand[j].index, cv[j2], cand[j2].index)) {
            j2 = jj;
          }
        }
        if (j1 < 0) break;  // every candidate picked: the next pass takes new ones
        const double M = static_cast<double>(cv[j1]);
        const double thr = M - 2.0 * err.E(M);
        // a point outside the candidates may be in the band: this pick needs
        // everyone's values, so the pass ends here
        if (B >= 0 && B >= thr) break;
        int64_t winner = cand[j1].index;
        double radius = M;
        if (j2 >= 0 && static_cast<double>(cv[j2]) >= thr) {
          members.clear();
          for (size_t j = 0; j < nc; ++j)
            if (!gone[j] && static_cast<double>(cv[j]) >= thr)
              members.push_back({cand[j].index, static_cast<double>(cv[j]),
                                 static_cast<double>(cm2[j]), cand[j].assign});
          decide(members, &winner, &radius);
        }
        commit(t, winner, radius);
        if (t + 1 < opt.budget) st->scan_evals += live;
        const int64_t ord = static_cast<int64_t>(centers.size());
        centers.push_back(winner);
        ++t;
        ++in_pass;
        for (size_t j = 0; j < nc; ++j)
          if (cand[j].index == winner) gone[j] = 1;
        if (t >= opt.budget) break;
        // the remaining candidates against the new pick: the fast kernel, so
        // that their values carry the same error bound as the engine's
        rows_p.clear();
        rows_s.clear();
        rows_j.clear();
        for (size_t j = 0; j < nc; ++j) {
          if (gone[j]) continue;
          rows_p.push_back(X.row(cand[j].index));
          if (src.scale) rows_s.push_back(src.scale[cand[j].index]);
          rows_j.push_back(static_cast<int64_t>(j));
        }
        src.center(src.ref(winner), cvec.data());
        const int64_t cnt = static_cast<int64_t>(rows_p.size());
        dist.resize(static_cast<size_t>(cnt));
        for (int64_t b = 0; b < cnt; b += 64) {
          const int64_t c = std::min<int64_t>(64, cnt - b);
          d2(X.dtype, rows_p.data() + b, src.scale ? rows_s.data() + b : nullptr, c, cvec.data(),
             D, dist.data() + b);
        }
        st->candidate_evals += cnt;
        for (int64_t r = 0; r < cnt; ++r) {
          const size_t j = static_cast<size_t>(rows_j[r]);
          cpu::take_center_distance(dist[r], ord, cv[j], cm2[j], cand[j].assign);
        }
      }
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
  st->select_seconds = seconds_since(t_select);
  if (auto* pruned = dynamic_cast<cpu::PrunedEngine<Acc>*>(engine.get()))
    st->fallback_step = pruned->fallback_step();
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
  const bool f64 = cpu::needs_float64(f, X.dtype, opt.metric, D);
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
