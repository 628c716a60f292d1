// The certification rule of a k-center pick, shared by every CPU driver: the
// float64 decision of an ambiguous band (decide_band), and the acceptance of a
// batched pass (PassAcceptor): the picks made inside a pass's candidates while
// they are certified (svp/kcenter.h, BatchOptions). The single-process driver
// (kcenter.cpp) runs them over its engine; the distributed batched protocol's
// deciding rank (shard.cpp, KCenterDecider) over the candidates every rank
// offered. Where the points and centers live is the driver's business: it
// answers the float64 questions (ExactOracle) and takes the picks (PassHost).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine.h"
#include "svp/kcenter.h"

namespace svp {
namespace cpu {

// The float64 questions of a certified decision.
class ExactOracle {
 public:
  virtual ~ExactOracle() = default;
  // The point with this index (the driver's numbering) in the working space,
  // float64: out[D].
  virtual void point64(int64_t index, double* out) = 0;
  // float64 squared distance from y (working space) to the center with this ordinal.
  virtual double center_d2(const double* y, int64_t ordinal) = 0;
  // The float64 minimum over every center so far of the squared distance to
  // y, given an upper bound on it; evals: incremented by the distances computed.
  virtual double min_over_centers(const double* y, double upper, int64_t* evals) = 0;
};

// The certified decision among the members of an ambiguous band (see the top
// of kcenter.cpp): the winner and its squared radius, in float64. err: the
// band model, tie: float64's own tolerance. Counts st->ambiguous_steps and
// st->exact_distance_evals.
void decide_band(const std::vector<BandMember>& members, const ErrorModel& err,
                 const ErrorModel& tie, int64_t D, ExactOracle& oracle, int64_t* winner,
                 double* radius, KCenterStats* st);

// What a pass's driver provides besides the float64 answers.
template <typename Acc>
class PassHost : public ExactOracle {
 public:
  // The working-space vector (Acc) of candidate `pos` of the pass, just picked: out[D].
  virtual void pick_vector(size_t pos, Acc* out) = 0;
  // Candidate `index` is the next pick, with squared radius `radius`; it
  // becomes the center with the next ordinal (first_ordinal + picks so far).
  virtual void take_pick(int64_t index, double radius) = 0;
};

// The acceptance of one batched pass. Scratch buffers live across passes.
template <typename Acc>
class PassAcceptor {
 public:
  PassAcceptor(DType dtype, int64_t D, D2RowsFn<Acc> d2, const ErrorModel& err,
               const ErrorModel& tie)
      : dtype_(dtype), D_(D), d2_(d2), err_(err), tie_(tie), cvec_(static_cast<size_t>(D)) {}

  // cand: the pass's candidates, best first (value, then lower index), up to
  // date against every center so far; rows[j] their raw rows (D elements of
  // dtype), scale[j] their 1/||x|| in Acc (cosine; null otherwise); B an upper
  // bound on every other live point's value (-1: none). Picks inside the
  // candidates while the best updated one is certified above B, at most
  // min(remaining, cap) of them, handing each to host as it is made. Returns
  // the number of picks: 0 when not even the first is certified (the driver
  // then needs a plain step over every point).
  int64_t accept(const std::vector<BandMember>& cand, const char* const* rows, const Acc* scale,
                 double B, int64_t remaining, int64_t cap, int64_t first_ordinal,
                 PassHost<Acc>& host, KCenterStats* st) {
    const size_t nc = cand.size();
    cv_.resize(nc);
    cm2_.resize(nc);
    assign_.resize(nc);
    gone_.assign(nc, 0);
    for (size_t j = 0; j < nc; ++j) {
      cv_[j] = static_cast<Acc>(cand[j].m);
      cm2_[j] = static_cast<Acc>(cand[j].m2);
      assign_[j] = cand[j].assign;
    }
    int64_t in_pass = 0;
    while (in_pass < remaining && in_pass < cap) {
      // the best two remaining candidates, by value then lower index
      int64_t j1 = -1, j2 = -1;
      for (size_t j = 0; j < nc; ++j) {
        if (gone_[j]) continue;
        const int64_t jj = static_cast<int64_t>(j);
        if (j1 < 0 || better(cv_[j], cand[j].index, cv_[j1], cand[j1].index)) {
          j2 = j1;
          j1 = jj;
        } else if (j2 < 0 || better(cv_[j], cand[j].index, cv_[j2], cand[j2].index)) {
          j2 = jj;
        }
      }
      if (j1 < 0) break;  // every candidate picked: the next pass takes new ones
      const double M = static_cast<double>(cv_[j1]);
      const double thr = M - 2.0 * err_.E(M);
      // a point outside the candidates may be in the band: this pick needs
      // everyone's values, so the pass ends here
      if (B >= 0 && B >= thr) break;
      int64_t winner = cand[j1].index;
      double radius = M;
      if (j2 >= 0 && static_cast<double>(cv_[j2]) >= thr) {
        members_.clear();
        for (size_t j = 0; j < nc; ++j)
          if (!gone_[j] && static_cast<double>(cv_[j]) >= thr)
            members_.push_back({cand[j].index, static_cast<double>(cv_[j]),
                                static_cast<double>(cm2_[j]), assign_[j]});
        decide_band(members_, err_, tie_, D_, host, &winner, &radius, st);
      }
      const int64_t ord = first_ordinal + in_pass;
      host.take_pick(winner, radius);
      ++in_pass;
      size_t wpos = 0;
      for (size_t j = 0; j < nc; ++j)
        if (cand[j].index == winner) {
          gone_[j] = 1;
          wpos = j;
        }
      if (in_pass >= remaining) break;
      // the remaining candidates against the new pick: the fast kernel, so
      // that their values carry the same error bound as the engine's
      rows_p_.clear();
      rows_s_.clear();
      rows_j_.clear();
      for (size_t j = 0; j < nc; ++j) {
        if (gone_[j]) continue;
        rows_p_.push_back(rows[j]);
        if (scale) rows_s_.push_back(scale[j]);
        rows_j_.push_back(static_cast<int64_t>(j));
      }
      host.pick_vector(wpos, cvec_.data());
      const int64_t cnt = static_cast<int64_t>(rows_p_.size());
      dist_.resize(static_cast<size_t>(cnt));
      for (int64_t b = 0; b < cnt; b += 64) {
        const int64_t c = std::min<int64_t>(64, cnt - b);
        d2_(dtype_, rows_p_.data() + b, scale ? rows_s_.data() + b : nullptr, c, cvec_.data(), D_,
            dist_.data() + b);
      }
      st->candidate_evals += cnt;
      for (int64_t r = 0; r < cnt; ++r) {
        const size_t j = static_cast<size_t>(rows_j_[r]);
        take_center_distance(dist_[r], ord, cv_[j], cm2_[j], assign_[j]);
      }
    }
    return in_pass;
  }

 private:
  DType dtype_;
  int64_t D_;
  D2RowsFn<Acc> d2_;
  ErrorModel err_, tie_;
  std::vector<Acc> cv_, cm2_, cvec_, rows_s_, dist_;
  std::vector<int64_t> assign_, rows_j_;
  std::vector<char> gone_;
  std::vector<const char*> rows_p_;
  std::vector<BandMember> members_;
};

}  // namespace cpu
}  // namespace svp
