// The k-d tree engine: exact k-center for low-dimensional points (point
// clouds, D <= 8 or so), where the work per pick is the overhead, not the
// distances.
//
// The idea is the bucket method of QuickFPS (Han et al., 2023): points are
// split by a k-d tree into buckets of a few dozen; every node of the tree
// keeps its bounding box and the best two live min-distances below it. A new
// center c can only lower the min-distance m(x) of a point x when
// ||x - c||^2 < m(x), and every point under a node lies at least
// lb = dist^2(c, box) from c, so a node with lb >= its largest m is skipped
// whole. Late in a run the radius is small and a pick touches the few buckets
// around it: a root-to-leaf walk plus a few dozen distances, against the
// pruned engine's pass over all of its cells.
//
// Arithmetic: float64 throughout (the driver picks float64 accumulation for
// this engine), so the certified argmax rarely needs a second look. The box
// bound is computed with a relative and an absolute margin that cover any
// rounding of either it or the distances it stands for, so a skipped center
// never had a computed distance below the point's min: the picks are the
// scan's exactly. A skipped center still bounds the point's second
// min-distance (m2, which the float64 tie test relies on): the node keeps
// the smallest skipped bound as a floor that applies to every point below it.
#pragma once

#include <cstring>
#include <vector>

#include "engine.h"

namespace svp {
namespace cpu {

class KdTreeEngine final : public Engine<double> {
 public:
  // Largest D the engine accepts: above it a box bound prunes little and the
  // coordinates (copied in float64) would cost more memory than they save.
  static constexpr int64_t kMaxDim = 32;
  // leaf_size: points per bucket (at most; at least half of it).
  KdTreeEngine(const RowSource<double>& src, int num_threads, int64_t leaf_size = 32);

  const RowSource<double>& src_ref() const override { return src_; }
  void exclude(int64_t row) override;
  void add_centers(const CenterRef* centers, const int64_t* ordinals, int64_t q) override;
  Top2 top2(const ErrorModel&) override;
  void band(double thr, std::vector<BandMember>& out) override;
  double top_candidates(int64_t T, std::vector<BandMember>& out) override;
  int64_t distance_evals() const override { return evals_; }
  void export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                    int64_t centers) const override;
  // A run resumes on the lazy engine instead (the picks are the same).
  bool adopt_state(const double*, const double*, const int64_t*, const int64_t*, int64_t,
                   const int64_t*) override {
    return false;
  }

 private:
  // A leaf's block: D coordinate arrays, then m, m2, assign and row, each of
  // cap_ slots (assign and row: int64 in double-sized slots).
  static constexpr int64_t kState = 4;
  struct LeafView {
    double* y;  // [D][cap]
    double* m;
    double* m2;
    int64_t* assign;
    int64_t* row;
  };
  LeafView leaf_view(int64_t leaf) const {
    double* b = const_cast<double*>(blocks_.data()) + leaf * block_;
    LeafView L;
    L.y = b;
    L.m = b + D_ * cap_;
    L.m2 = L.m + cap_;
    L.assign = reinterpret_cast<int64_t*>(L.m2 + cap_);
    L.row = L.assign + cap_;
    return L;
  }

  void build(int threads, int depth);
  template <int DD>
  bool apply(int64_t node, const double* c, int64_t ordinal);
  // best two of a stale node (and its stale descendants) from their children
  void refresh(int64_t node);
  bool apply_leaf(int64_t node, const double* c, int64_t ordinal);
  void leaf_top(int64_t node);
  void band_node(int64_t node, double thr, double floor, std::vector<BandMember>& out) const;
  // a lower bound of every computed squared distance from c to a point of the node
  template <int DD>
  double box_bound(int64_t node, const double* c) const;
  bool is_leaf(int64_t node) const { return node >= n_leaves_; }

  RowSource<double> src_;
  int64_t n_ = 0, D_ = 0;
  int64_t cap_ = 8, block_ = 0;   // slots per leaf (a multiple of 8), doubles per leaf block
  int64_t n_leaves_ = 1;  // a power of two; nodes 1 .. 2 n_leaves_ - 1, heap order
  std::vector<int64_t> lo_;       // [2 n_leaves_] first point of each node (in split order)
  std::vector<int64_t> hi_;       // [2 n_leaves_] one past the last
  std::vector<double> box_;       // [2 n_leaves_][2 D]: lower corner, then upper corner
  std::vector<Top2> top_;         // [2 n_leaves_] best two live points below the node
  std::vector<double> floor_;     // [2 n_leaves_] smallest bound of a center skipped there
  std::vector<char> stale_;       // [2 n_leaves_] best two out of date (a point below was picked)
  bool any_stale_ = false;
  // the leaves' blocks (float64 coordinates in the working space, then the
  // state): a leaf is one run of memory
  std::vector<double> blocks_;
  std::vector<int64_t> where_;    // row -> leaf * cap_ + slot
  std::vector<double> d_;         // scratch: a leaf's distances
  std::vector<double> c_;         // scratch: the center in the working space
  double rel_margin_ = 0, abs_margin_ = 0;
  int64_t evals_ = 0;
};

}  // namespace cpu
}  // namespace svp
