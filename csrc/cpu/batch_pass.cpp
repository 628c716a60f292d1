#include "batch_pass.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

namespace svp {
namespace cpu {

void decide_band(const std::vector<BandMember>& members, const ErrorModel& err,
                 const ErrorModel& tie, int64_t D, ExactOracle& oracle, int64_t* winner,
                 double* radius, KCenterStats* st) {
  ++st->ambiguous_steps;
  struct Cand {
    int64_t index;
    double upper;  // float64 distance to its assigned center
    bool exact;    // upper is its exact min
  };
  std::vector<double> buf(static_cast<size_t>(D));
  std::vector<Cand> cands;
  cands.reserve(members.size());
  for (const BandMember& b : members) {
    oracle.point64(b.index, buf.data());
    const double u = oracle.center_d2(buf.data(), b.assign);
    ++st->exact_distance_evals;
    // an exact zero cannot go lower; else a second center must be clearly farther
    const bool certain = u == 0.0 || b.m2 - b.m > 2.0 * err.E(b.m2);
    cands.push_back({b.index, u, certain});
  }
  std::sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
    return better(a.upper, a.index, b.upper, b.index);
  });
  // Exact values equal within float64's own error bound are ties (real
  // ties, e.g. symmetric integer data, land anywhere within it): the winner
  // is the lowest index among members within tie(mx) of the largest, mx.
  // Members come by decreasing upper bound; once one's upper bound is below
  // mx - tie(mx), no later member can reach the tie set.
  std::vector<std::pair<double, int64_t>> computed;
  double mx = -std::numeric_limits<double>::infinity();
  for (const Cand& c : cands) {
    if (!computed.empty() && c.upper < mx - tie.E(mx)) break;
    double v = c.upper;
    if (!c.exact) {
      oracle.point64(c.index, buf.data());
      v = oracle.min_over_centers(buf.data(), c.upper, &st->exact_distance_evals);
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
}

}  // namespace cpu
}  // namespace svp
