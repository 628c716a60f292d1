// Greedy k-center inside many sets of rows in one call: class-balanced
// core-sets (one set per class) and batches of point clouds (one set per
// cloud).
//
// Semantics: each group's picks are exactly those of kcenter_cpu run on that
// group's rows alone (in ascending row order), with its own budget,
// already-selected rows and start: the same lowest-index ties and float64
// certified argmax, whatever the engine, thread count or the other groups.
#pragma once

#include <cstdint>

#include "svp/common.h"
#include "svp/kcenter.h"

namespace svp {

// Which rows form each group, and what to pick in it. Positions are indices
// into a group's own rows (0 .. size - 1), as if the group were the matrix.
struct KCenterGroups {
  int64_t n_groups = 0;
  // [offsets[G]] rows of X, group after group, ascending within each group.
  // A group whose rows are consecutive rows of X is read in place; any other
  // is copied into a contiguous buffer for the time it runs.
  const int64_t* members = nullptr;
  const int64_t* offsets = nullptr;           // [G + 1] group g: members[offsets[g] .. offsets[g+1])
  const int64_t* budgets = nullptr;           // [G] new picks per group
  const int64_t* starts = nullptr;            // [G] first pick (position) of groups with nothing selected
  const int64_t* selected = nullptr;          // already selected positions, group after group
  const int64_t* selected_offsets = nullptr;  // [G + 1]; null: nothing selected anywhere
  const int* methods = nullptr;               // [G] KCenterMethod of each group
  const int64_t* cells = nullptr;             // [offsets[G]] cell (within its group) of each member, or null
  const int64_t* n_cells = nullptr;           // [G] cells of each pruned group, or null
  // > 0: X holds sets of this many rows each (a (B, P, D) batch): errors name
  // the set and the point instead of the row
  int64_t set_rows = 0;
};

struct KCenterGroupsOptions {
  Metric metric = Metric::euclidean;
  double fallback_fraction = 2.0;
  int64_t cell_copy_max_bytes = int64_t{1} << 30;
  int num_threads = 0;  // 0: OpenMP's default
  // Called from the calling thread with the picks made so far over all
  // groups (picks pointer null); false stops the run (Cancelled).
  Progress* progress = nullptr;
  double poll_interval = 0.1;
  const char* arg_name = "embeddings";
  const char* simd = nullptr;
};

// picks: [sum of budgets] positions within each group, group after group, each
// group in pick order. radii: the same layout, or null. group_stats: [G] each
// group's statistics, or null. total: the sums over groups (select_seconds:
// the wall time of the whole selection).
void kcenter_groups_cpu(const MatrixView& X, const KCenterGroups& groups,
                        const KCenterGroupsOptions& opt, int64_t* picks, double* radii,
                        KCenterStats* group_stats, KCenterStats* total);

}  // namespace svp
