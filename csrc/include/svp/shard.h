// The k-center state of one shard of the points, driven step by step: the
// primitive a distributed driver (svp_fast.distributed, over torch.distributed)
// is built on. Every rank holds one shard; each step it applies the new center
// (a local row or a vector broadcast by its owner), reports its two best
// candidates, and on ambiguous steps answers float64 questions, so that all
// ranks reach the picks of single-process kcenter on the concatenated data.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "svp/common.h"
#include "svp/kcenter.h"

namespace svp {

// Facts from one validation pass over a matrix; reduce them over shards
// (max of max_abs and max_norm, min of min_norm) before choosing the arithmetic.
struct ShardFacts {
  int64_t bad_row = -1, bad_col = -1;  // first NaN/Inf, or -1
  double bad_value = 0;
  int64_t zero_row = -1;  // first all-zero row, or -1
  double max_abs = 0;
  double min_norm = 0, max_norm = 0;
};
ShardFacts shard_facts(const MatrixView& X, int num_threads, const char* simd);

// The arithmetic rule shared by every driver: float64 for float64 input or
// when squared distances could leave float32's normal range.
bool shard_needs_float64(const ShardFacts& reduced, DType dtype, Metric metric, int64_t D);

struct ShardOptions {
  Metric metric = Metric::euclidean;
  KCenterMethod method = KCenterMethod::scan;
  CellPartition cells;  // pruned method
  bool float64 = false;  // from shard_needs_float64 on the reduced facts
  int num_threads = 0;
  const char* simd = nullptr;
  const char* arg_name = "embeddings";
};

struct ShardCandidate {
  double value;  // squared distance (working space)
  int64_t index;  // local row, -1 if none
};

struct ShardBandMember {
  int64_t index;  // local row
  double value;
};

class KCenterShard {
 public:
  // X: the local rows (0 rows allowed). Validates X (NaN/Inf, zero rows for cosine).
  KCenterShard(const MatrixView& X, const ShardOptions& opt);
  ~KCenterShard();
  KCenterShard(const KCenterShard&) = delete;
  KCenterShard& operator=(const KCenterShard&) = delete;

  int64_t rows() const;
  // A local point that is a center or picked: never a candidate again.
  void exclude(int64_t local_row);
  // Apply the next center: raw points at D elements of X's dtype; local_row
  // is its row here, or -1 when another shard owns it.
  void add_center(const void* raw, int64_t local_row);
  // The two best local candidates (index -1 when absent). Every local point
  // whose value could lie in the band below the global best is up to date.
  void top2(ShardCandidate* first, ShardCandidate* second);
  // |computed - exact| <= error_bound(computed) for every value reported,
  // widened by half the float64 tie tolerance: the band of a step is
  // [M - 2 error_bound(M), M] (see svp/exactness.h, band_model).
  double error_bound(double value) const;
  // float64 values (exact_min) within exact_tolerance(v) of the largest v are
  // ties: the lowest global index among them wins.
  double exact_tolerance(double value) const;
  // Local live points with value >= thr.
  std::vector<ShardBandMember> band(double thr);
  // float64 squared distance from vector raw_y (D elements of X's dtype) to
  // the nearest of the given local rows (+inf when there are none).
  double exact_min(const void* raw_y, const int64_t* local_rows, int64_t count);
  int64_t distance_evals() const;

  struct Impl;  // backend state (float32 or float64 arithmetic)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace svp
