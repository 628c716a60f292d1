// The plain scan: every step reads every live row once, in one fused pass
// (distance to the new centers, min-update, per-thread top-2), parallel over
// rows with OpenMP.
#pragma once

#include <algorithm>
#include <vector>

#include "engine.h"
#include "product_screen.h"

namespace svp {
namespace cpu {

template <typename Acc>
class ScanEngine final : public Engine<Acc> {
 public:
  ScanEngine(const RowSource<Acc>& src, int num_threads);

  const RowSource<Acc>& src_ref() const override { return src_; }
  void exclude(int64_t row) override { m_[row] = Acc(-1); }
  void add_centers(const CenterRef* centers, const int64_t* ordinals, int64_t q) override;
  Top2 top2(const ErrorModel&) override { return top_; }
  void band(double thr, std::vector<BandMember>& out) override;
  double top_candidates(int64_t T, std::vector<BandMember>& out) override;
  int64_t distance_evals() const override { return evals_; }
  int64_t product_pairs() const override { return product_pairs_; }
  int64_t product_recomputes() const override { return product_recomputes_; }
  void export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                    int64_t centers) const override;
  bool adopt_state(const double* m, const double* m2, const int64_t* assign, const int64_t* fresh,
                   int64_t centers, const int64_t* center_rows) override;

  // State, for engines that hand over to the scan (pruned -> scan fallback).
  std::vector<Acc>& m() { return m_; }
  std::vector<Acc>& m2() { return m2_; }
  std::vector<int64_t>& assign() { return assign_; }
  // Recompute the top-2 from the state (after a hand-over).
  void refresh_top2();

 private:
  RowSource<Acc> src_;
  int threads_;
  int64_t chunk_;  // rows per kernel call
  std::vector<Acc> m_, m2_;
  std::vector<int64_t> assign_;
  std::vector<Acc> centers_;  // q x D, the current batch of centers
  ProductScreen<Acc> screen_;  // many centers at once (a batched pass): the product
  std::vector<typename ProductScreen<Acc>::Scratch> scratch_;  // one per thread
  Top2 top_;
  int64_t evals_ = 0, product_pairs_ = 0, product_recomputes_ = 0;
};

}  // namespace cpu
}  // namespace svp
