// The lazy engine: exact k-center that refreshes a point only when it could
// matter.
//
// A point's min-distance only falls as centers are added, so a value computed
// earlier ("stale") is an upper bound of its current one. The engine keeps an
// active set A = {live points with value >= theta} up to date every step; the
// other ("dormant") points keep stale values below theta and cannot be the
// maximum while the maximum is above theta. When the certified argmax needs
// more (the band [M - 2E(M), M] reaches below theta), theta is lowered and the
// dormant points above it are refreshed against all centers added since their
// last refresh, in cache-blocked tiles (rows in L1, centers streamed: compute
// bound, several times the per-distance throughput of a streaming scan).
//
// It helps on any data, including isotropic noise where no geometric bound
// prunes (measured on 50,000 x 64 Gaussian points: about a third of the
// scan's distances).
#pragma once

#include <vector>

#include "engine.h"
#include "product_screen.h"

namespace svp {
namespace cpu {

template <typename Acc>
class LazyEngine final : public Engine<Acc> {
 public:
  LazyEngine(const RowSource<Acc>& src, int num_threads);

  const RowSource<Acc>& src_ref() const override { return src_; }
  void exclude(int64_t row) override { m_[row] = Acc(-1); }
  void add_centers(const CenterRef* centers, const int64_t* ordinals, int64_t q) override;
  Top2 top2(const ErrorModel& err) override;
  void band(double thr, std::vector<BandMember>& out) override;
  double top_candidates(int64_t T, std::vector<BandMember>& out) override;
  int64_t distance_evals() const override { return evals_; }
  int64_t product_pairs() const override { return product_pairs_; }
  int64_t product_recomputes() const override { return product_recomputes_; }
  void export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                    int64_t centers) const override;
  // Any state: rows that have not seen every center stay dormant with their
  // stale values (upper bounds), theta just above the largest of them.
  bool adopt_state(const double* m, const double* m2, const int64_t* assign, const int64_t* fresh,
                   int64_t centers, const int64_t* center_rows) override;

  int64_t refreshed() const { return refresh_evals_; }

  // Take over an up-to-date state after K centers (another engine's hand-over):
  // every point is fresh, so the centers before K are never needed again.
  void adopt(std::vector<Acc>&& m, std::vector<Acc>&& m2, std::vector<int64_t>&& assign,
             int64_t K, int64_t evals);

 private:
  // fetch the working-space vector of center ordinal j (a pointer into X for
  // float32 Euclidean input, else converted into buf)
  const Acc* center(int64_t j, Acc* buf) const;
  // refresh `rows` (dormant, live) against the centers they have not seen
  void refresh(std::vector<int64_t>& rows);
  // the same through the product screen (rows sorted by last refresh)
  void refresh_product(const std::vector<int64_t>& rows);
  void compact();
  void push_dormant(int64_t i);
  bool pop_dormant(std::pair<Acc, int64_t>* out);
  bool has_dormant();
  void rebuild_dormant();
  void recompute_top();
  void lower_theta(const ErrorModel& err);
  void raise_theta(double limit);

  RowSource<Acc> src_;
  int threads_;
  int64_t n_, D_;
  bool direct_centers_;  // centers are rows of X usable as Acc vectors
  std::vector<Acc> m_, m2_;
  std::vector<int64_t> assign_, last_;
  std::vector<CenterRef> centers_;     // ordinal -> center
  std::vector<std::vector<char>> remote_;  // copies of caller-given centers
  std::vector<int64_t> active_;       // sorted
  std::vector<char> in_active_;
  std::vector<std::pair<Acc, int64_t>> heap_;  // dormant rows by stale value
  double theta_;
  int64_t target_;
  Top2 top_;
  int64_t evals_ = 0, refresh_evals_ = 0, product_pairs_ = 0, product_recomputes_ = 0;
  std::vector<Acc> cbuf_;
  ProductScreen<Acc> screen_;
  std::vector<double> cfacts_;  // the screen's facts of centers 0, 1, ... (2 each)
  std::vector<int64_t> ordinals_;  // 0, 1, 2, ...
  // blocks of centers in the working space, kept across refreshes
  struct CenterBlock {
    std::vector<Acc> v;  // center_block x D
    int64_t n = 0;       // converted so far
  };
  std::vector<CenterBlock> blocks_;
  int64_t block_bytes_ = 0, block_size_ = 0;
  // block b's centers (b * cb .. upto - 1 converted), or null when the
  // cache cannot hold it without dropping a newer block
  const Acc* block_of(int64_t b, int64_t cb, int64_t upto);
  std::vector<typename ProductScreen<Acc>::Scratch> scratch_;  // one per thread
};

}  // namespace cpu
}  // namespace svp
