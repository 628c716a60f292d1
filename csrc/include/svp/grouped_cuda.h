// The CUDA twin of kcenter_groups_cpu (svp/grouped.h): k-center inside many
// sets of rows of one device matrix, in one kernel launch.
//
// Semantics are those of svp/grouped.h: each group's picks are exactly those
// of k-center on that group's rows alone (the float64 reference's, lowest
// index on ties). Every group runs the fused scan (the GPU's engine for sets;
// `methods` is ignored, `cells` must be null).
//
// One persistent kernel works through all groups: a group with more work
// than about two blocks' share runs on several blocks that meet at a barrier
// of their own every step (never one block for a million points); the others
// are taken from queues, one block or one warp per group (many small groups
// share a block), so no group waits for another's steps.
#pragma once

#include <cstdint>

#include "svp/common.h"
#include "svp/cuda.h"
#include "svp/grouped.h"
#include "svp/kcenter.h"

namespace svp {
namespace cuda {

struct KCenterGroupsCudaOptions {
  Metric metric = Metric::euclidean;
  // polled from the calling thread while the kernel runs (picks pointer
  // null); false stops the kernel within a few steps (Cancelled)
  Progress* progress = nullptr;
  double poll_interval = 0.1;
  const char* arg_name = "embeddings";
};

// Bytes of device workspace kcenter_groups_cuda needs. The arrays of
// `groups` are HOST arrays (copied to the device by the call).
int64_t kcenter_groups_cuda_workspace(const DeviceMatrix& X, const KCenterGroups& groups,
                                      const KCenterGroupsCudaOptions& opt);

// picks: DEVICE int64 [sum of budgets], positions within each group, group
// after group, each in pick order; radii: DEVICE float64, same layout, or
// null. group_stats: HOST [G] or null; total: HOST or null.
void kcenter_groups_cuda(const DeviceMatrix& X, const KCenterGroups& groups,
                         const KCenterGroupsCudaOptions& opt, void* workspace,
                         int64_t workspace_bytes, int64_t* picks, double* radii,
                         KCenterStats* group_stats, KCenterStats* total);

}  // namespace cuda
}  // namespace svp
