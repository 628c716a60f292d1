// Many k-center selections in one call (svp/grouped.h).
//
// Every group runs the single-set driver (kcenter_cpu) on its own rows, so
// its picks are by construction those of a call on that group alone, and
// that driver validates the group's rows. What this file adds is the
// scheduling: groups too large to share a thread (more work than a thread's fair share)
// run one after another on every thread, and the rest run side by side, one
// thread each, largest first, taken from a shared queue so that many small
// groups spread evenly over the threads. Progress and Ctrl-C are served from
// the calling thread throughout.
#include "svp/grouped.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "engine.h"
#include "kernels.h"
#include "prepare.h"

namespace svp {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// State shared by the threads of one call.
struct Shared {
  std::atomic<int64_t> done{0};        // picks made, over all groups
  std::atomic<bool> stop{false};       // a group failed or the caller asked to stop
  std::atomic<int64_t> finished{0};    // groups of the parallel phase done (or skipped)
  Progress* caller = nullptr;
  std::mutex mu;
  std::exception_ptr error;            // the first failure other than Cancelled
  bool cancelled = false;

  void fail(std::exception_ptr e, bool is_cancel) {
    std::lock_guard<std::mutex> lock(mu);
    if (is_cancel)
      cancelled = true;
    else if (!error)
      error = e;
    stop = true;
  }
};

// The progress hook one group's run sees: it adds the group's picks to the
// shared count, stops when any group failed, and on the calling thread
// passes the total on to the caller's hook.
class GroupProgress final : public Progress {
 public:
  GroupProgress(Shared* s, bool calling_thread) : s_(s), calling_(calling_thread) {}
  bool poll(int64_t done, const int64_t*) override {
    s_->done += done - last_;
    last_ = done;
    if (s_->stop) return false;
    if (calling_ && s_->caller && !s_->caller->poll(s_->done.load(), nullptr)) {
      s_->stop = true;
      return false;
    }
    return true;
  }

 private:
  Shared* s_;
  bool calling_;
  int64_t last_ = 0;
};

struct GroupRef {
  int64_t g;
  double work;
};

// Names a row in errors: the row of X, or the set and point of a batch.
std::string row_name(const KCenterGroups& grp, int64_t row) {
  if (grp.set_rows > 0)
    return format("set %lld, point %lld", (long long)(row / grp.set_rows),
                  (long long)(row % grp.set_rows));
  return format("row %lld", (long long)row);
}

void check_groups(const MatrixView& X, const KCenterGroups& grp) {
  const int64_t G = grp.n_groups;
  SVP_CHECK_ARG(G >= 0, "groups: expected a non-negative number of groups, got %lld", (long long)G);
  if (G == 0) return;
  SVP_CHECK_ARG(grp.offsets && grp.budgets && grp.starts && grp.methods,
                "groups: offsets, budgets, starts and methods are required");
  SVP_CHECK_ARG(grp.offsets[0] == 0, "groups: offsets[0] must be 0, got %lld",
                (long long)grp.offsets[0]);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t size = grp.offsets[g + 1] - grp.offsets[g];
    SVP_CHECK_ARG(size >= 0, "groups: offsets must not decrease (group %lld)", (long long)g);
    const int64_t n_sel =
        grp.selected_offsets ? grp.selected_offsets[g + 1] - grp.selected_offsets[g] : 0;
    SVP_CHECK_ARG(n_sel >= 0 && n_sel <= size,
                  "groups: group %lld has %lld already selected for %lld points", (long long)g,
                  (long long)n_sel, (long long)size);
    SVP_CHECK_ARG(grp.budgets[g] >= 0 && grp.budgets[g] <= size - n_sel,
                  "budget of group %lld must be in [0, %lld], got %lld", (long long)g,
                  (long long)(size - n_sel), (long long)grp.budgets[g]);
    const int m = grp.methods[g];
    SVP_CHECK_ARG(m >= 0 && m <= 4, "groups: unknown method code %d", m);
    if (m == static_cast<int>(KCenterMethod::pruned))
      SVP_CHECK_ARG(grp.cells && grp.n_cells && grp.n_cells[g] >= 1,
                    "groups: group %lld runs the pruned method and needs cells", (long long)g);
  }
  const int64_t total = grp.offsets[G];
  SVP_CHECK_ARG(total == 0 || grp.members, "groups: members are required");
  for (int64_t q = 0; q < total; ++q)
    SVP_CHECK_ARG(grp.members[q] >= 0 && grp.members[q] < X.rows,
                  "groups: member %lld is row %lld, out of range [0, %lld)", (long long)q,
                  (long long)grp.members[q], (long long)X.rows);
}

// One pass over the rows of every group that picks anything: the errors of
// kcenter_cpu's own pass, naming the caller's first bad row (not a position
// within a group). Run only after a group failed.
void validate_rows(const MatrixView& X, const KCenterGroups& grp, Metric metric,
                   const cpu::KernelTable& k, int threads, const char* name) {
  const int64_t G = grp.n_groups;
  int64_t bad_row = std::numeric_limits<int64_t>::max(), bad_col = -1;
  int64_t zero_row = std::numeric_limits<int64_t>::max();
  double max_abs = 0;
  // groups that pick nothing are never read, as alone: mark their members
  bool skip_some = false;
  for (int64_t g = 0; g < G && !skip_some; ++g) skip_some = grp.budgets[g] == 0;
  const int64_t total = grp.offsets[G];
#pragma omp parallel num_threads(threads)
  {
    int64_t my_bad = std::numeric_limits<int64_t>::max(), my_col = -1;
    int64_t my_zero = std::numeric_limits<int64_t>::max();
    double my_max = 0;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < total; ++q) {
      if (skip_some) {
        const int64_t g = std::upper_bound(grp.offsets, grp.offsets + G + 1, q) - grp.offsets - 1;
        if (grp.budgets[g] == 0) continue;
      }
      const int64_t r = grp.members[q];
      cpu::RowFacts f;
      k.row_facts(X.dtype, X.row(r), X.cols, &f);
      if (f.bad_col >= 0) {
        if (r < my_bad) {
          my_bad = r;
          my_col = f.bad_col;
        }
        continue;
      }
      my_max = std::max(my_max, f.max_abs);
      if (f.sumsq == 0 && r < my_zero) my_zero = r;
    }
#pragma omp critical(svp_groups_validate)
    {
      if (my_bad < bad_row) {
        bad_row = my_bad;
        bad_col = my_col;
      }
      zero_row = std::min(zero_row, my_zero);
      max_abs = std::max(max_abs, my_max);
    }
  }
  if (bad_col >= 0) {
    const double v = cpu::raw_elem(X.dtype, X.row(bad_row), bad_col);
    throw ValueError(format("%s must be finite, got %g at %s, column %lld", name, v,
                            row_name(grp, bad_row).c_str(), (long long)bad_col));
  }
  if (metric == Metric::cosine && zero_row != std::numeric_limits<int64_t>::max())
    throw ValueError(format("%s %s is all zeros; the cosine metric needs rows of nonzero norm",
                            name, row_name(grp, zero_row).c_str()));
  if (X.dtype == DType::f64)
    SVP_CHECK_ARG(max_abs <= 1e150,
                  "%s holds values up to %g, whose squared distances overflow float64; "
                  "rescale the embeddings",
                  name, max_abs);
}

// Runs group g on `threads` threads: its rows in place when they are
// consecutive rows of X, else copied into buf.
void run_group(const MatrixView& X, const KCenterGroups& grp, const KCenterGroupsOptions& opt,
               int64_t g, const int64_t* pick_offsets, int threads, std::vector<char>& buf,
               Progress* progress, int64_t* picks, double* radii, KCenterStats* st) {
  const int64_t a = grp.offsets[g], size = grp.offsets[g + 1] - a;
  const int64_t* rows = grp.members + a;
  MatrixView V;
  V.cols = X.cols;
  V.dtype = X.dtype;
  V.rows = size;
  bool consecutive = true;
  for (int64_t i = 1; i < size && consecutive; ++i) consecutive = rows[i] == rows[0] + i;
  if (consecutive) {
    V.data = X.row(rows[0]);
    V.row_stride = X.row_stride;
  } else {
    const size_t row_bytes = static_cast<size_t>(X.cols) * dtype_size(X.dtype);
    buf.resize(row_bytes * static_cast<size_t>(size));
    for (int64_t i = 0; i < size; ++i)
      std::memcpy(buf.data() + static_cast<size_t>(i) * row_bytes, X.row(rows[i]), row_bytes);
    V.data = buf.data();
    V.row_stride = X.cols;
  }
  KCenterOptions o;
  o.metric = opt.metric;
  o.budget = grp.budgets[g];
  if (grp.selected_offsets) {
    o.already_selected = grp.selected + grp.selected_offsets[g];
    o.n_selected = grp.selected_offsets[g + 1] - grp.selected_offsets[g];
  }
  o.start = grp.starts[g];
  o.method = static_cast<KCenterMethod>(grp.methods[g]);
  if (o.method == KCenterMethod::pruned) {
    o.cells.cell_of = grp.cells + a;
    o.cells.n_cells = grp.n_cells[g];
    o.cells.copy_max_bytes = opt.cell_copy_max_bytes;
  }
  o.fallback_fraction = opt.fallback_fraction;
  o.num_threads = threads;
  o.progress = progress;
  o.poll_interval = opt.poll_interval;
  o.arg_name = opt.arg_name;
  o.simd = opt.simd;
  const int64_t p0 = pick_offsets[g];
  kcenter_cpu(V, o, picks + p0, radii ? radii + p0 : nullptr, st);
}

void add_stats(KCenterStats& total, const KCenterStats& s) {
  total.distance_evals += s.distance_evals;
  total.scan_evals += s.scan_evals;
  total.ambiguous_steps += s.ambiguous_steps;
  total.exact_distance_evals += s.exact_distance_evals;
  total.float64_accumulation = total.float64_accumulation || s.float64_accumulation;
}

}  // namespace

void kcenter_groups_cpu(const MatrixView& X, const KCenterGroups& grp,
                        const KCenterGroupsOptions& opt, int64_t* picks, double* radii,
                        KCenterStats* group_stats, KCenterStats* total) {
  const Clock::time_point t0 = Clock::now();
  const char* name = opt.arg_name ? opt.arg_name : "embeddings";
  KCenterStats local_total;
  KCenterStats* tot = total ? total : &local_total;
  *tot = KCenterStats();
  SVP_CHECK_ARG(X.cols >= 1, "%s must have at least one column, got %lld", name,
                (long long)X.cols);
  check_groups(X, grp);
  const int64_t G = grp.n_groups;
  if (G == 0) return;
  int threads = opt.num_threads > 0 ? opt.num_threads : std::max(1, omp_get_max_threads());
  const cpu::KernelTable& k = cpu::kernels_or_throw(opt.simd);

  std::vector<int64_t> pick_offsets(static_cast<size_t>(G + 1), 0);
  std::vector<GroupRef> big, small;
  double work = 0;
  for (int64_t g = 0; g < G; ++g) {
    pick_offsets[g + 1] = pick_offsets[g] + grp.budgets[g];
    work += static_cast<double>(grp.offsets[g + 1] - grp.offsets[g]) *
            static_cast<double>(grp.budgets[g]);
  }
  // A few milliseconds of work in all (an upper bound: a scan's distances)
  // run on the calling thread: waking a second thread, on a busy machine, cost
  // 10-100 ms against 1 ms for five groups of 100 rows
  if (work * static_cast<double>(X.cols) < static_cast<double>(int64_t{1} << 25)) threads = 1;
  for (int64_t g = 0; g < G; ++g) {
    if (grp.budgets[g] == 0) continue;
    const double w = static_cast<double>(grp.offsets[g + 1] - grp.offsets[g]) *
                     static_cast<double>(grp.budgets[g]);
    // more than a thread's fair share: alone it would be the critical path
    (threads > 1 && w * threads > work ? big : small).push_back({g, w});
  }
  auto larger_first = [](const GroupRef& a, const GroupRef& b) {
    return a.work > b.work || (a.work == b.work && a.g < b.g);
  };
  std::sort(big.begin(), big.end(), larger_first);
  std::sort(small.begin(), small.end(), larger_first);
  std::vector<KCenterStats> stats(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) stats[g].method_used = grp.methods[g];  // also with budget 0
  tot->setup_seconds = seconds_since(t0);
  const Clock::time_point t_select = Clock::now();

  Shared sh;
  sh.caller = opt.progress;
  // groups larger than a thread's share: one at a time, every thread on it
  {
    std::vector<char> buf;
    for (const GroupRef& r : big) {
      if (sh.stop) break;
      GroupProgress hook(&sh, true);
      try {
        run_group(X, grp, opt, r.g, pick_offsets.data(), threads, buf, &hook, picks, radii,
                  &stats[r.g]);
      } catch (const Cancelled&) {
        sh.fail(nullptr, true);
      } catch (...) {
        sh.fail(std::current_exception(), false);
      }
    }
  }
  // the rest side by side, one thread each, largest first from a shared queue
  const int64_t n_small = static_cast<int64_t>(small.size());
  if (!sh.stop && n_small > 0) {
    const int team = static_cast<int>(std::min<int64_t>(threads, n_small));
#pragma omp parallel num_threads(team)
    {
      std::vector<char> buf;
      const bool calling = omp_get_thread_num() == 0;
#pragma omp for schedule(dynamic, 1) nowait
      for (int64_t i = 0; i < n_small; ++i) {
        const int64_t g = small[static_cast<size_t>(i)].g;
        if (!sh.stop) {
          GroupProgress hook(&sh, calling);
          try {
            run_group(X, grp, opt, g, pick_offsets.data(), 1, buf, &hook, picks, radii,
                      &stats[g]);
          } catch (const Cancelled&) {
            sh.fail(nullptr, true);
          } catch (...) {
            sh.fail(std::current_exception(), false);
          }
        }
        ++sh.finished;
      }
      // the calling thread, out of groups, keeps serving the caller's hook
      // until the others are done
      if (calling) {
        Clock::time_point last = Clock::now();
        while (sh.finished.load() < n_small) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          if (sh.caller && !sh.stop && seconds_since(last) >= opt.poll_interval) {
            last = Clock::now();
            if (!sh.caller->poll(sh.done.load(), nullptr)) sh.fail(nullptr, true);
          }
        }
      }
    }
  }
  if (sh.error) {
    // a group's own validation names a position in that group: find the
    // caller's first bad row over all groups (the pass runs only on failure)
    try {
      std::rethrow_exception(sh.error);
    } catch (const ValueError&) {
      validate_rows(X, grp, opt.metric, k, threads, name);
      throw;
    }
  }
  if (sh.cancelled) throw Cancelled();
  if (sh.caller && !sh.caller->poll(sh.done.load(), nullptr)) throw Cancelled();

  // setup: the checks and the validation pass; each group's own setup is
  // part of the selection's wall time
  for (int64_t g = 0; g < G; ++g) add_stats(*tot, stats[g]);
  tot->method_used = grp.methods[0];
  tot->select_seconds = seconds_since(t_select);
  if (group_stats)
    for (int64_t g = 0; g < G; ++g) group_stats[g] = stats[g];
}

}  // namespace svp
