// The k-center state of one shard of the points: the primitive a distributed
// driver (svp_fast.distributed, over torch.distributed) is built on. Every
// rank holds one shard, and all ranks reach the picks of single-process
// kcenter on the concatenated data, by one of two protocols
// (docs/distributed.md):
// - stepwise: each step the shard applies the new center (a local row or a
//   vector broadcast by its owner), reports its two best candidates, and on
//   ambiguous steps answers float64 questions;
// - batched: each pass the shard offers its T best candidates with their rows
//   (offer), one rank (KCenterDecider) certifies as many picks among every
//   rank's offers as it can, and every shard applies them in one call
//   (add_centers).
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

// One rank's message in the batched protocol's all-gather (the offer of its
// T best candidates), byte layout:
//   [0, 8)    int64 count: candidates offered (<= T)
//   [8, 16)   float64 bound: an upper bound on the value of every live point
//             of the shard not offered (-1: there is none)
//   then T records of 32 bytes: float64 value (squared distance to the
//             nearest center, working space), float64 m2 (a lower bound on
//             the distance to every other center), int64 assign (ordinal of
//             the center that gave value), int64 global index; records past
//             count hold value -1 and index -1
//   then T raw rows of row_bytes (D elements of the input dtype), the
//             candidates' rows in record order
//   padded with zeros to a multiple of 8 bytes.
struct OfferLayout {
  int64_t T = 0, row_bytes = 0;
  int64_t head_bytes() const { return 16 + 32 * T; }
  int64_t row_offset(int64_t j) const { return head_bytes() + j * row_bytes; }
  int64_t bytes() const { return (head_bytes() + T * row_bytes + 7) / 8 * 8; }
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

  // The batched protocol. Writes this shard's offer (OfferLayout{T, row
  // bytes}, global indices = global_offset + local row) to message: its T
  // best live points by value then lower index, up to date against every
  // center applied, and the bound on the rest. Returns the count offered.
  int64_t offer(int64_t T, int64_t global_offset, void* message);
  // Apply q centers at once (ordinals continue the run's): rows holds their
  // raw rows back to back (row bytes each); local_rows[j] is center j's row
  // here (excluded first: never a candidate again) or -1.
  void add_centers(const void* rows, const int64_t* local_rows, int64_t q);

  struct Impl;  // backend state (float32 or float64 arithmetic)

 private:
  std::unique_ptr<Impl> impl_;
};

// The acceptance of the batched protocol, run by one rank (the deciding rank)
// on the offers of every rank. Every value in the offers carries the same
// rigorous error bound whatever arithmetic computed it (another ISA, a GPU),
// so certified picks are the float64 picks; the decisions are made by this
// one object and shared, because ranks computing them on their own fast bits
// could stop a pass at different picks. The rule is single-process kcenter's
// (csrc/cpu/batch_pass.h). It keeps every center's raw row, in ordinal order,
// for the float64 minimum of near-ties: (centers) x D x element bytes of host
// memory.
struct PassDecision {
  int64_t picks = 0;  // 0: no pick certified; a plain step decides the next one
  double thr = -1;    // then: the band of that step, M - 2E(M) of the best candidate
};

class KCenterDecider {
 public:
  // D, dtype: the shards'; opt: metric, float64 (the run's arithmetic),
  // num_threads, simd. capacity: centers expected (memory is reserved).
  KCenterDecider(int64_t D, DType dtype, const ShardOptions& opt, int64_t capacity);
  ~KCenterDecider();
  KCenterDecider(const KCenterDecider&) = delete;
  KCenterDecider& operator=(const KCenterDecider&) = delete;

  // Append q centers (raw rows back to back), taking the next ordinals.
  void add_centers(const void* rows, int64_t q);
  int64_t centers() const;
  // One pass over world offers (back to back, OfferLayout{T, row bytes}
  // each): the candidates are the T best of every rank's, by value then lower
  // global index; the bound is the largest of the ranks' bounds and of the
  // best value offered but not among them. Picks inside the candidates while
  // certified, at most min(remaining, cap); their global indices, slots (rank
  // x T + record) and squared working-space radii go to picks, slots, radii
  // (room for T each), and the picks become centers here.
  PassDecision decide_pass(const void* offers, int64_t world, int64_t T, int64_t remaining,
                           int64_t cap, int64_t* picks, int64_t* slots, double* radii);
  // Near-ties decided in float64 (within passes), float64 distances computed,
  // candidate-to-pick distances computed.
  int64_t ambiguous_steps() const;
  int64_t exact_distance_evals() const;
  int64_t candidate_evals() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace svp
