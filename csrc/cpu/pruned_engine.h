// The pruned engine: exact k-center that skips what provably cannot move.
//
// Points are grouped into cells (any partition; k-means makes a good one).
// Per cell: its centroid mu, its radius r = max ||x - mu||, two pivots (the
// member farthest from mu, then the member farthest from that one) and the
// largest current min-distance of its live members (cmax). Per point:
// p(x) = ||x - mu|| and q_j(x) = ||x - pivot_j||, members sorted by p. For a
// new center c at dc = ||c - mu|| and dq_j = ||c - pivot_j||, the triangle
// inequality gives ||x - c|| >= |dc - p(x)| >= dc - r and
// ||x - c|| >= |dq_j - q_j(x)|, so
//   - a cell with (dc - r)^2 >= cmax cannot change: skipped whole (first
//     tested with the centroid-to-centroid distances, which need no new
//     distance at all);
//   - otherwise only members with |dc - p(x)| < sqrt(cmax) can change: a
//     contiguous range of the sorted members (binary search);
//   - inside it a member is skipped when the largest of the three bounds,
//     squared, is at least m(x).
// Bounds are computed in float64 with a relative margin, so every skipped
// distance is provably no smaller than the value it would have replaced, and
// the certified argmax of kcenter.cpp gives the scan's picks exactly.
//
// With a projection (CellPartition::proj), two more bounds, from k stored
// coordinates instead of D-element rows. With y = x - mu split by the
// projector Pi on the directions V,
// ||x - c||^2 = ||Pi(x - c)||^2 + ||(I - Pi)(x - c)||^2
//            >= (||Vx - Vc|| - e_x - e_c)^2 + (rho_x - rho_c)^2
// (e: the stored coordinates' error, rho: the residual norm, in an interval).
//   - per cell, before the center's float64 distance to its centroid:
//     dc >= ||V(c - centroid)|| - errors, so a cell whose (that - r)^2 is at
//     least cmax is skipped without reading the centroid's D coordinates;
//   - per member the centroid's annulus leaves (in place of the pivots'):
//     the bound above, before its row is read.
// On embeddings whose spread lies mostly in a few directions this rules out
// nearly every member the annulus leaves. Where the member bound does not pay
// (it rules out too few to cover its reads) it pauses, for a number of steps
// that doubles each time, and the pivots' annuli take over until it tries
// again.
//
// When pruning does not pay (isotropic noise, or data whose cells stay wider
// than the covering radius), the engine notices over windows of steps and
// hands its state to the lazy engine, which needs no geometry.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine.h"
#include "lazy_engine.h"
#include "scan_engine.h"
#include "svp/kcenter.h"

namespace svp {
namespace cpu {

template <typename Acc>
class PrunedEngine final : public Engine<Acc> {
 public:
  // poll(done) is called during the (possibly long) setup.
  PrunedEngine(const RowSource<Acc>& src, const CellPartition& cells, int num_threads,
               double fallback_fraction, std::function<void(int64_t)> poll);

  const RowSource<Acc>& src_ref() const override { return src_; }
  void exclude(int64_t row) override;
  void add_centers(const CenterRef* centers, const int64_t* ordinals, int64_t q) override;
  Top2 top2(const ErrorModel& err) override;
  void band(double thr, std::vector<BandMember>& out) override;
  double top_candidates(int64_t T, std::vector<BandMember>& out) override;
  int64_t distance_evals() const override;
  void export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                    int64_t centers) const override;
  bool adopt_state(const double* m, const double* m2, const int64_t* assign, const int64_t* fresh,
                   int64_t centers, const int64_t* center_rows) override;
  // centers must be every center added so far (the driver's list): they are
  // looked up by cell, and whole cells of centers are skipped by the triangle
  // inequality.
  double exact_min(const double* ycenter, double upper, const int64_t* centers, int64_t K,
                   int threads, int64_t* evals) override;

  // Step (count of add_centers calls) at which the engine fell back to the
  // lazy engine, or -1.
  int64_t fallback_step() const { return fallback_step_; }
  // members tested with the projection bound, and the ones it ruled out
  int64_t projection_tests() const { return proj_tests_; }
  int64_t projection_skips() const { return proj_skips_; }

 private:
  void add_one(const CenterRef& ref, const Acc* c, const double* c64, int64_t ordinal);
  // several centers at once (the initial ones): per cell, the centers that
  // survive its bounds are applied while its members stay in cache
  void add_batch(const CenterRef* refs, const int64_t* ordinals, int64_t q);
  struct Work;
  // members in [wk.qa, wk.qb) of cell wk.cell that the annuli around its
  // centroid and pivots leave, appended to keep; returns their count
  // (pivots: false when the step bounds members by the projection instead)
  int64_t annulus_members(const Work& wk, int64_t* keep, bool pivots = true);
  // the live members in [wk.qa, wk.qb), appended to keep; returns their count
  int64_t live_members(const Work& wk, int64_t* keep) const;
  // distances of members pos[0..cnt) (cnt <= kBlock) to center c, applied to
  // m, m2 and assign; moved[t]: whether member t is one of its cell's best
  // two and its minimum went down
  void member_distances(const int64_t* pos, int64_t cnt, const Acc* c, int64_t ordinal,
                        char* moved);
  Top2 cell_top(int64_t k) const;  // best two live members of cell k
  void set_cell_top(int64_t k, const Top2& t);  // ctop_[k] and the is_top_ flags
  void update_cell_top(int64_t k);
  // member q's row (in cell order): the copy when there is one
  const char* member_row(int64_t q) const {
    return rows_.empty() ? src_.X.row(perm_[q]) : rows_.data() + q * row_bytes_;
  }
  // the members cand[0..cnt) that the projection bound leaves for center
  // position qc, compacted in place; ruled-out members keep the bound as a
  // lower bound on m2. Returns their count.
  int64_t projection_members(int64_t qc, int64_t* cand, int64_t cnt);
  // the cells surv[0..ns) that the projected centroid bound leaves for center
  // position qc, compacted in place (ruled-out cells lower their floor)
  int64_t projection_cells(int64_t qc, int64_t* surv, int64_t ns);
  // whether this step tests members with the projection bound (it pays, or
  // is re-tried)
  bool projection_on() const { return proj_dims_ > 0 && proj_pause_ == 0; }
  void projection_window(int64_t tests, int64_t skips);
  void tree_update(int64_t k);
  void maybe_fall_back();
  void fall_back();

  RowSource<Acc> src_;
  int threads_;
  double fallback_fraction_;
  int64_t n_cells_ = 0, D_ = 0, n_ = 0;

  // per cell
  std::vector<int64_t> lo_;       // [n_cells + 1] member range in cell order
  std::vector<double> centroid_;  // [n_cells, D] float64, working space
  std::vector<double> radius_;    // [n_cells]
  std::vector<double> cmax_;      // [n_cells] ctop_.v1, or -1 for a cell with no live member
  std::vector<double> dc_;        // [n_cells] squared distances of the current center
  std::vector<char> keep_;        // [n_cells] scratch: cells the cheap bound leaves
  std::vector<int64_t> surv_;     // [n_cells] scratch: their indices
  static constexpr int kPivots = 2;  // reference points per cell besides the centroid
  struct Work {  // a cell a step scans: members [qa, qb), center at dc from the
                 // centroid and dq[j] from pivot j
    int64_t cell, qa, qb;
    double dc, dq[kPivots];
  };
  std::vector<Work> work_;        // [<= n_cells] scratch
  std::vector<const char*> sptrs_;  // [n_cells] scratch: their centroid rows
  std::vector<const char*> centroid_ptrs_;
  // [n_cells, kPivots, D] float64: per cell, the member farthest from its
  // centroid, then the member farthest from that one
  std::vector<double> pivot_;
  std::vector<const char*> pivot_ptrs_;  // [n_cells * kPivots] rows of pivot_, for the kernels
  std::vector<Top2> ctop_;        // [n_cells] best two live members
  std::vector<double> m2floor_;   // [n_cells] lower bound for skipped centers
  std::vector<double> cc_;        // [n_cells, n_cells] centroid distances, or empty
  std::vector<char> changed_;     // [n_cells] scratch: cells whose best two moved
  std::vector<int64_t> cand_;     // [N] scratch: positions a step evaluates
  std::vector<char> moved_;       // [N] scratch: whether each was a top member that moved
  std::vector<Top2> tree_;        // tournament tree over ctop_ (root: tree_[1])
  int64_t leaves_ = 1;
  struct CellCenter {
    double p;     // distance to the cell's centroid
    int64_t row;
  };
  std::vector<std::vector<CellCenter>> cell_centers_;  // [n_cells] the centers in each cell
  // per point, in cell order
  std::vector<int64_t> perm_;  // position -> row
  std::vector<int64_t> where_;  // row -> position
  std::vector<int32_t> cellpos_;  // position -> cell
  std::vector<double> p_;      // ||x - mu_cell||
  std::vector<double> q_;      // [kPivots, N] ||x - pivot_j of its cell||
  std::vector<char> rows_;     // the rows in cell order (D elements each), or empty
  int64_t row_bytes_ = 0;
  std::vector<Acc> scale_;     // src_.scale in cell order (cosine), or empty
  // the projection, in cell order (CellPartition::proj), or empty
  int64_t proj_dims_ = 0;
  double proj_scale_ = 1.0;       // a power of two: coordinates are proj_ * proj_scale_
  std::vector<float> proj_;       // [N, proj_dims_]
  std::vector<double> proj_err_;  // [N]
  std::vector<double> rlo_, rhi_;  // [N] the residual norm's interval
  std::vector<double> cproj_;     // [n_cells, proj_dims_] V(centroid - mu), float64
  std::vector<double> cproj_err_;  // [n_cells] its error bound
  int64_t proj_tests_ = 0, proj_skips_ = 0;
  // pays when it rules out more than this fraction of the members it tests
  double proj_break_even_ = 0;
  int64_t proj_pause_ = 0, proj_next_pause_ = 64;  // steps left untested, the next pause
  int64_t proj_win_tests_ = 0, proj_win_skips_ = 0, proj_win_steps_ = 0;
  std::vector<Acc> m_, m2_;
  std::vector<int64_t> assign_;
  std::vector<char> is_top_;   // 1 for the members that are their cell's best two

  int64_t n_centers_ = 0, n_local_centers_ = 0;
  std::vector<Acc> cbuf_;
  std::vector<double> cbuf64_;
  Top2 top_;
  int64_t evals_ = 0;

  // fallback bookkeeping
  int64_t steps_ = 0, live_ = 0;
  int64_t window_steps_ = 0, window_evals_ = 0, window_scan_ = 0;
  int64_t fallback_step_ = -1;
  std::unique_ptr<LazyEngine<Acc>> fallback_;  // the engine after a fallback
};

}  // namespace cpu
}  // namespace svp
