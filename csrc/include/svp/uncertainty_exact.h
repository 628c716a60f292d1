// The arithmetic contract of uncertainty top-k, shared by the CPU and CUDA
// backends (header-only, host and device), in the way exactness.h is for
// k-center.
//
// Ranking keys. Every method ranks rows by a key that keeps its relative
// digits where the score itself would cancel (higher key = more uncertain).
// With z a row of logits, m = max z, T = sum over j != argmax of exp(z_j - m)
// (so S = sum_j exp(z_j - m) = 1 + T, and a repeated maximum adds 1 per extra
// copy), U = sum_j exp(z_j - m) (m - z_j) and z_(2) the second largest logit
// (m again when the maximum is repeated):
//
//   method            key                                score reported
//   least_confidence  T                                  T / (1 + T)      (= 1 - p_(1))
//   margin            -d, d = -expm1(z_(2) - m) / (1+T)  1 - d            (d = p_(1) - p_(2))
//   entropy           H = log1p(T) + U / (1 + T)         H                (= -sum p log p)
//
// Each key is a sum or quotient of non-negative terms, so it has small
// relative error everywhere; 1 - (p1 - p2) and 1 - p1 do not (they lose their
// digits exactly for the most uncertain rows). For C = 1 there is no second
// logit: z_(2) = -inf, d = 1. Probabilities (inputs = probs) rank by
// 1 - p_(1), -(p_(1) - p_(2)) and -sum p log p (terms with p > 0), computed
// from the given p in float64.
//
// The reference. The float64 value g of a key is any evaluation of the
// formulas above in float64 (numpy's, the CPU's, the GPU's: they differ in
// exp, expm1, log1p and the order of the sums). Every such g is within
// tie_tol(g) / 2 of the exact value, so two conforming evaluations of one row
// (a permuted row, a duplicate) are within tie_tol of each other. The top-k is
// the greedy order with ties: repeatedly, among the rows left, with M the
// largest g, take the lowest index among the rows with g >= M - tie_tol(M).
// Float64 values equal within float64's own error are ties; the lowest index
// wins.
//
// Certification. The fast pass computes each key in float32 arithmetic with a
// proven bound err: |key - g| <= err for every conforming g. Sorted by the fast
// keys, rows split into groups wherever the lowest lower bound so far minus
// the tie tolerance lies above every later upper bound: a row of an earlier
// group then precedes every row of a later one in the reference, whatever g
// turns out to be. A group of one row is placed by its fast key; the rows of
// every larger group in or straddling the top k are recomputed in float64 and
// ordered by the greedy rule above.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "svp/exactness.h"
#include "svp/uncertainty.h"

namespace svp {
namespace unc {

constexpr double kU32 = 5.9604644775390625e-08;     // 2^-24, float32 unit roundoff
constexpr double kU64 = 1.1102230246251565e-16;     // 2^-53, float64 unit roundoff
constexpr double kTiny64 = 3.5601181736115222e-307;  // 2^-1018

// Largest |clamped logit gap| the fast kernels feed to exp: exp(-104) is below
// float32's smallest subnormal, so gaps beyond it contribute at most
// kFastAbsTerm each (and 0 * inf never appears in U).
constexpr float kFastGapClamp = 104.0f;
// Per-term absolute error of the fast exp (flushed or subnormal results):
// exp(-87.3) < 2^-125, and every fast exp is exact to within 2^-149 below it.
constexpr double kFastAbsTerm = 2.350988701644575e-38;  // 2^-125
// Per-term absolute error of the fast p log p (p below float32's smallest
// normal is dropped: p |log p| < 2^-126 * 87.4 < 2^-119).
constexpr double kFastAbsLogTerm = 1.504632769052528e-36;  // 2^-119

// The float64 tie tolerance: tie_tol(v) = eps |v| + beta.
//   eps = 4 (C + 1024) 2^-53: each term of a sum errs by at most
//   (16 + 750) 2^-53 relative (exp or log within 8 ulp; for float64 logits the
//   gap z - m is itself rounded, and a gap of a contributing term is < 746),
//   any summation order of C non-negative terms adds at most 1.01 C 2^-53,
//   expm1, log1p, the divisions and the final addition a few 2^-53 more;
//   entropy adds the errors of its two parts. That bounds every conforming g
//   within (2 (C + 800)) 2^-53 |v| + beta / 2 of the exact value; tie_tol is
//   twice that.
//   beta = (C + 1) 2^-1018 for underflowed terms. Probability entropy can have
//   terms of both signs (entries above 1, within the tolerance): its error is
//   relative to sum |p log p| <= H + 2 (C + 1) t (1 + (C + 1) t), t the
//   probability tolerance, which adds eps times twice that to beta.
struct TieModel {
  double eps = 0, beta = 0;
  SVP_HD double tol(double v) const { return eps * fabs(v) + beta; }
  // The greedy rule's threshold: rows with g >= threshold(M) tie with M.
  SVP_HD double threshold(double M) const { return M - tol(M); }
  // A value at or below every threshold(M) for M >= lo, as computed in float64
  // (the subtraction and tol's own rounding are a few 2^-53 |lo|; the margin
  // here is 16 of them): groups are split on it.
  SVP_HD double below(double lo) const {
    return lo - (tol(lo) + 16.0 * kU64 * fabs(lo) + beta);
  }
};

SVP_HD TieModel tie_model(UncertaintyMethod method, ScoreInput input, int64_t C,
                          double probs_tolerance) {
  TieModel t;
  const double c = static_cast<double>(C);
  t.eps = 4.0 * (c + 1024.0) * kU64;
  t.beta = (c + 1.0) * kTiny64;
  if (input == ScoreInput::probs && method == UncertaintyMethod::entropy) {
    const double pt = probs_tolerance > 0 ? probs_tolerance : 0.0;
    t.beta += t.eps * 2.0 * (c + 1.0) * pt * (1.0 + (c + 1.0) * pt);
  }
  return t;
}

// A row's key, its bound and its score. err == 0: key is a float64 value g
// (the row was computed by the float64 formulas).
struct KeyBound {
  double key = 0, err = 0, score = 0;
};

// Non-finite results (only from unchecked non-finite input) rank last, as
// float64 values: the same on every backend.
SVP_HD KeyBound finite_or_last(KeyBound k) {
  if (!(k.key > -INFINITY && k.key < INFINITY) || !(k.err < INFINITY) || k.err != k.err) {
    k.key = -INFINITY;
    k.err = 0;
  }
  return k;
}

// ------------------------------------------------------ float64 formulas --

// From the float64 sums of a row of logits: T1 = sum of exp(z_j - m) over
// z_j < m, n_max = how many z_j equal m, U = sum exp(z_j - m) (m - z_j),
// gap2 = z_(2) - m (-inf for C = 1).
SVP_HD KeyBound exact_logits(UncertaintyMethod method, double T1, double n_max, double U,
                             double gap2) {
  KeyBound k;
  const double T = T1 + (n_max - 1.0);
  const double S = 1.0 + T;
  switch (method) {
    case UncertaintyMethod::least_confidence:
      k.key = T;
      k.score = T / S;
      break;
    case UncertaintyMethod::margin: {
      const double d = -expm1(gap2) / S;
      k.key = -d;
      k.score = 1.0 - d;
      break;
    }
    default:
      k.key = log1p(T) + U / S;
      k.score = k.key;
      break;
  }
  return finite_or_last(k);
}

// From a row of probabilities: p1 >= p2 the two largest entries (p2 = 0 for
// C = 1) and H = -sum p log p over p > 0, all float64.
SVP_HD KeyBound exact_probs(UncertaintyMethod method, double p1, double p2, double H) {
  KeyBound k;
  switch (method) {
    case UncertaintyMethod::least_confidence:
      k.key = 1.0 - p1;
      k.score = k.key;
      break;
    case UncertaintyMethod::margin: {
      const double d = p1 - p2;
      k.key = -d;
      k.score = 1.0 - d;
      break;
    }
    default:
      k.key = H;
      k.score = H;
      break;
  }
  return finite_or_last(k);
}

// --------------------------------------------------------- fast formulas --

// What a backend's float32 pass guarantees, per row of C classes:
//   exp_rel: |fexp(x) - e^x| <= exp_rel e^x + kFastAbsTerm for the float32
//            gap x it is given (x in [-kFastGapClamp, 0]);
//   log_rel: |flog(p) - log p| <= log_rel |log p| for normal p in (0, 1];
//   sum_rel: the relative error of its sums of C non-negative terms that make
//            a key (T or S; U for entropy; -sum p log p);
//   aux_sum_rel: the same for V (entropy's bound only), which may be coarser;
//   prod_rel: rounding of a product in a term (e * a, p * log p).
struct FastModel {
  double exp_rel = 0, log_rel = 0, sum_rel = 0, aux_sum_rel = 0, prod_rel = 0;
};

// Bounds of log y for y >= 1 without libm (the bounds need no more): y = 2^e m
// with m in [1, 2), log y = e ln 2 + log m and m - 1 - (m - 1)^2 / 2 <= log m
// <= m - 1.
SVP_HD double split_exponent(double y, double* m) {  // y > 0 normal: y = 2^e m
  uint64_t bits;
  memcpy(&bits, &y, 8);
  const int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
  memcpy(m, &bits, 8);
  return static_cast<double>(e);
}
SVP_HD double log_upper(double y) {
  if (!(y > 1.0)) return 0.0;
  if (!(y < 1.0e300)) return 691.0;
  double m;
  const double e = split_exponent(y, &m);
  return (0.6931471805599453 * e + (m - 1.0)) * (1.0 + 1e-12);
}
SVP_HD double log_lower(double y) {
  if (!(y > 1.0)) return 0.0;
  if (!(y < 1.0e300)) return 690.0;
  double m;
  const double e = split_exponent(y, &m);
  m -= 1.0;
  return (0.6931471805599453 * e + m - 0.5 * m * m) * (1.0 - 1e-12);
}

// The fast epilogue's elementary functions: no libm, no branches, inline on
// every backend. The fast bounds are some 1e-7 wide, so these need only be far
// better than that: each is within kEpilogueRel of the exact value (truncated
// series, bounded below; their float64 roundings add a few 2^-53).
constexpr double kEpilogueRel = 4.656612873077393e-10;  // 2^-31

// 2^k for an integer k in [-1022, 1023].
SVP_HD double pow2i(int k) {
  const uint64_t bits = static_cast<uint64_t>(k + 1023) << 52;
  double v;
  memcpy(&v, &bits, 8);
  return v;
}

// 1 - e^x for x <= 0 with its relative digits near 0: x = n ln 2 + r,
// |r| <= 0.347, expm1(r) = r (1 + r/2! + ... + r^8/9!) (the terms left out are
// below 0.347^9 / 10! < 2^-35 of it; Estrin's scheme: a short dependency
// chain); n = 0: -expm1(r); n < 0: 1 - 2^n (1 + expm1(r)), where
// 2^n (1 + expm1(r)) <= 0.71 so the subtraction loses at most a factor 3.5.
// 1 below -746 (and for -inf).
SVP_HD double one_minus_exp(double x) {
  x = x > -746.0 ? x : -746.0;
  const double n = floor(x * 1.4426950408889634 + 0.5);
  double r = fma(-n, 6.93147180369123816490e-01, x);
  r = fma(-n, 1.90821492927058770002e-10, r);
  const double r2 = r * r, r4 = r2 * r2;
  const double a = fma(r, 1.0 / 2.0, 1.0);                     // 1 + r/2
  const double b = fma(r, 1.0 / 24.0, 1.0 / 6.0);               // 1/3! + r/4!
  const double c = fma(r, 1.0 / 720.0, 1.0 / 120.0);            // 1/5! + r/6!
  const double d = fma(r, 1.0 / 40320.0, 1.0 / 5040.0);         // 1/7! + r/8!
  const double q = fma(r4, fma(r4, 1.0 / 362880.0, fma(r2, d, c)), fma(r2, b, a));
  const double em = r * q;  // expm1(r)
  const int k = static_cast<int>(n);
  const int k1 = k / 2;
  const double scaled = (1.0 + em) * pow2i(k1) * pow2i(k - k1);
  return k == 0 ? -em : 1.0 - scaled;
}

// log(1 + T) for T >= 0 with S = fl(1 + T), S < 1e300: 2 atanh(s) =
// 2 (s + s^3/3 + ... + s^11/11) (the rest below 0.0295^6 / 13 < 2^-34 of it)
// with s = T / (2 + T) when S < sqrt 2 (from T itself: small T keeps its
// digits), else S = 2^e m, m in [sqrt(1/2), sqrt 2], s = (m - 1) / (m + 1).
SVP_HD double log1p_nonnegative(double T, double S) {
  double m;
  double e = split_exponent(S, &m);
  const bool high = m > 1.4142135623730951;
  m = high ? 0.5 * m : m;
  e = high ? e + 1.0 : e;
  const bool small = e == 0.0;  // S < sqrt 2
  const double s = (small ? T : m - 1.0) / (small ? 2.0 + T : m + 1.0);
  const double w = s * s;
  double q = 1.0 / 11.0;
  q = fma(q, w, 1.0 / 9.0);
  q = fma(q, w, 1.0 / 7.0);
  q = fma(q, w, 1.0 / 5.0);
  q = fma(q, w, 1.0 / 3.0);
  q = fma(q, w, 1.0);
  return fma(e, 0.6931471805599453, 2.0 * s * q);
}

// The constants of fast_logits for one method and C, made once per call.
struct FastPlan {
  UncertaintyMethod method;
  TieModel tie;
  double R0;         // absolute error of the C terms (flushed / subnormal exps)
  double log_c;      // >= log C
  // the coarse bound of the sum (the subtraction's error at its worst, a = 104):
  // crude = crude_a * base + crude_b
  double crude_a, crude_b;
  // e_sum = sum_a * base + sum_u * U_up + sum_b
  double sum_a, sum_u, sum_b;
  double u_scale, u_add;  // computed U -> bound of the exact one: (U + u_add) u_scale
  double v_scale, v_add;
  double eu_rel;  // error of a computed U, per unit of U (entropy)
};

SVP_HD FastPlan fast_plan(UncertaintyMethod method, int64_t C, const FastModel& fm,
                          const TieModel& tie) {
  const double u = kU32, ud = kU64, up = 1.0 + 9.094947017729282e-13;
  FastPlan p;
  p.method = method;
  p.tie = tie;
  p.R0 = 1.02 * static_cast<double>(C) * kFastAbsTerm;
  p.log_c = log_upper(static_cast<double>(C));
  const double e_rel = 1.01 * (fm.exp_rel + fm.sum_rel);
  const double crude_rel = e_rel + 1.02 * u * kFastGapClamp;
  const double inv_e = up / (1.0 - e_rel), inv_crude = up / (1.0 - crude_rel);
  p.crude_a = up * (crude_rel + 2.0 * ud) * inv_crude;
  p.crude_b = up * p.R0 * inv_crude;
  p.sum_a = up * (e_rel + 2.0 * ud) * inv_e;
  p.sum_u = up * 1.02 * u * inv_e;
  p.sum_b = up * p.R0 * inv_e;
  const double lowU = fm.exp_rel + 1.01 * u * kFastGapClamp + u + fm.prod_rel + fm.sum_rel;
  const double lowV = fm.exp_rel + 1.01 * u * kFastGapClamp + 3.0 * u + 2.0 * fm.prod_rel +
                      fm.aux_sum_rel;
  p.u_scale = up * (1.0 + 2.0 * lowU);
  p.u_add = 105.0 * p.R0;
  p.v_scale = up * (1.0 + 2.0 * lowV);
  p.v_add = 105.0 * 105.0 * p.R0;
  p.eu_rel = 1.01 * (fm.exp_rel + u + fm.prod_rel + fm.sum_rel);
  return p;
}

// The fast key of a row of logits and its bound, from float64 totals of float32
// terms fexp(x_j), x_j = fl32(z_j - m), a_j = min(-x_j, kFastGapClamp):
//   least confidence, entropy: sum = T1 + (n_max - 1), T1 the sum over x_j < 0
//     and n_max the count of x_j == 0 (so T keeps its digits when it is small);
//   margin: sum = S, over every j (the maxima add exactly 1 each: only S is used);
//   U = sum fexp(x_j) a_j for entropy, and V: the computed sum fexp(x_j) a_j^2,
//   or a_max U with a_max >= every a_j (an upper bound of it: V is only used
//   bounded by (V + v_add) v_scale >= a_max (U + u_add) u_scale); U < 0: not
//   computed (least confidence, margin on the CPU);
//   gap2 = z_(2) - m in float64.
//
// Each term: x_j differs from z_j - m by at most u |z_j - m| = u a_j (a rounded
// subtraction), which moves e^x by a factor within 1 +- 1.01 u a_j, so
//   |fexp(x_j) - t_j| <= (exp_rel + 1.01 u a_j) t_j + kFastAbsTerm,
// t_j = exp(z_j - m). Summed: |T1 - T'| <= e_rel T' + 1.02 u U + R0 with
// e_rel = 1.01 (exp_rel + sum_rel) (the same for S). Where U is not computed it
// is bounded by the entropy: H(p) = U / S + log S <= log C, so
// U <= S log(C / S), with S from a first, coarse bound (a_j <= 104). A computed
// U is low by at most exp_rel + 1.01 u 104 + u + prod_rel + sum_rel per term.
// 1 / (1 - x) <= 1 + 2x for the x <= 1/4 here; every bound is rounded up by
// (1 + 2^-40), far above the float64 rounding of its own few operations.
template <UncertaintyMethod M>
SVP_HD KeyBound fast_logits(const FastPlan& p, double sum, double U, double V, double gap2) {
  const double ud = kU64, up = 1.0 + 9.094947017729282e-13 /* 2^-40 */;
  constexpr bool margin = M == UncertaintyMethod::margin;
  // the sum as computed; margin sums S directly, the others T (+1 for S)
  const double T = margin ? sum - 1.0 : sum;
  const double S = margin ? sum : 1.0 + sum;
  const double base = margin ? S : T;  // what the relative errors refer to
  KeyBound k;
  if (!(S >= 1.0 && S < 1.0e300)) {  // only from non-finite input
    k.err = INFINITY;
    return k;
  }
  const double invS = 1.0 / S;
  double U_up;
  if (U >= 0) {
    U_up = (U + p.u_add) * p.u_scale;
  } else {
    const double crude = p.crude_a * base + p.crude_b;
    const double lg = p.log_c - log_lower(S - crude);
    U_up = up * ((S + crude) * (lg > 0 ? lg : 0.0) + p.u_add);
  }
  // |computed - exact| of the sum (T for least confidence and entropy, S for margin)
  const double e_sum = p.sum_a * base + p.sum_u * U_up + p.sum_b;
  const double eS = up * (e_sum + ud * S);
  const double relS = eS * invS;  // |S~ - S| / S~
  if (!(relS < 0.25)) {  // a bound this poor never happens for finite input
    k.err = INFINITY;
    return k;
  }
  if constexpr (M == UncertaintyMethod::least_confidence) {
    k.key = T;
    k.score = T * invS;
    k.err = e_sum;
  } else if constexpr (margin) {
    // d = num / S: num = 1 - e^gap2 within kEpilogueRel (one_minus_exp; gap2
    // rounded at most once: x / (e^x - 1) <= 1 keeps that at 2^-53), two
    // roundings in num * (1/S); 1/S moves by relS / (1 - relS).
    const double d = one_minus_exp(gap2) * invS;
    const double rel = relS * (1.0 + 2.0 * relS) + kEpilogueRel + 4.0 * ud;
    k.key = -d;
    k.score = 1.0 - d;
    k.err = up * d * rel * (1.0 + 2.0 * rel);
  } else {
    // H = log(1 + T) + U/S: the log moves by at most e_sum / (S - e_sum) (its
    // slope), plus kEpilogueRel of its own (log1p_nonnegative) and, where
    // S = fl(1 + T) stands in for 1 + T, 2^-53 more; U/S by
    // (eU + (U/S) eS) / (S - eS).
    const double L = log1p_nonnegative(T, S);
    const double eL = e_sum * invS * (1.0 + 2.0 * relS) + kEpilogueRel * L + 2.0 * ud;
    const double V_up = (V + p.v_add) * p.v_scale;
    const double eU = up * (p.eu_rel * U_up + 1.01 * kU32 * V_up + p.u_add);
    const double Q = (U >= 0 ? U : 0.0) * invS;
    const double eQ = (eU + Q * eS) * invS * (1.0 + 2.0 * relS) + 2.0 * ud * Q;
    const double H = L + Q;
    k.key = H;
    k.score = H;
    k.err = up * (eL + eQ + 2.0 * ud * H);
  }
  // against any conforming float64 value, not only the exact one
  k.err = up * (k.err + 0.5 * p.tie.tol(fabs(k.key) + k.err));
  return k;
}

SVP_HD KeyBound fast_logits(const FastPlan& p, double sum, double U, double V, double gap2) {
  switch (p.method) {
    case UncertaintyMethod::least_confidence:
      return fast_logits<UncertaintyMethod::least_confidence>(p, sum, U, V, gap2);
    case UncertaintyMethod::margin:
      return fast_logits<UncertaintyMethod::margin>(p, sum, U, V, gap2);
    default:
      return fast_logits<UncertaintyMethod::entropy>(p, sum, U, V, gap2);
  }
}

// The fast key of a row of probabilities whose entries are at most 1, from the
// float64 total H of float32 terms -p flog(p) (p >= float32's smallest
// normal; smaller p are dropped).
SVP_HD KeyBound fast_probs_entropy(int64_t C, double H, const FastModel& fm,
                                   const TieModel& tie) {
  const double up = 1.0 + 9.094947017729282e-13;
  const double rel = 1.01 * (fm.log_rel + fm.prod_rel + fm.sum_rel);
  KeyBound k;
  k.key = H;
  k.score = H;
  k.err = up * (rel * H / (1.0 - rel) + static_cast<double>(C) * kFastAbsLogTerm);
  k.err = up * (k.err + 0.5 * tie.tol(fabs(H) + k.err));
  return k;
}

// ------------------------------------------------------------ the greedy --

// Sorts n positions of (g, idx) pairs into (g descending, idx ascending) with
// a heap sort on the positions array pos (no extra memory; the CUDA backend
// runs it in one thread per group).
SVP_HD bool before_in_sort(const double* g, const int64_t* idx, int64_t a, int64_t b) {
  return g[a] > g[b] || (g[a] == g[b] && idx[a] < idx[b]);
}

SVP_HD void sift_down_last(int64_t* pos, int64_t start, int64_t n, const double* g,
                           const int64_t* idx) {
  // max-heap under "comes later in the sort", so the heap sort leaves the
  // earliest first
  int64_t r = start;
  for (;;) {
    int64_t child = 2 * r + 1;
    if (child >= n) return;
    if (child + 1 < n && before_in_sort(g, idx, pos[child], pos[child + 1])) ++child;
    if (!before_in_sort(g, idx, pos[r], pos[child])) return;
    const int64_t t = pos[r];
    pos[r] = pos[child];
    pos[child] = t;
    r = child;
  }
}

SVP_HD void heap_sort_desc(int64_t* pos, int64_t n, const double* g, const int64_t* idx) {
  for (int64_t s = n / 2 - 1; s >= 0; --s) sift_down_last(pos, s, n, g, idx);
  for (int64_t end = n - 1; end > 0; --end) {
    const int64_t t = pos[0];
    pos[0] = pos[end];
    pos[end] = t;
    sift_down_last(pos, 0, end, g, idx);
  }
}

// The greedy order with ties of one group. g, idx: the group's n rows, sorted by
// (g descending, idx ascending). Writes the first n_out rows of the greedy
// order to out (row indices). Scratch: heap [n] positions, taken [n] flags.
SVP_HD void greedy_with_ties(const double* g, const int64_t* idx, int64_t n, int64_t n_out,
                             const TieModel& tie, int64_t* heap, unsigned char* taken,
                             int64_t* out) {
  for (int64_t i = 0; i < n; ++i) taken[i] = 0;
  int64_t first = 0, next = 0, size = 0;
  for (int64_t t = 0; t < n_out; ++t) {
    while (taken[first]) ++first;
    const double thr = tie.threshold(g[first]);
    // every row not yet taken with g >= thr enters the window (a min-heap by
    // index); thresholds only fall, so the window only grows
    while (next < n && g[next] >= thr) {
      int64_t c = size++;
      heap[c] = next;
      while (c > 0) {
        const int64_t p = (c - 1) / 2;
        if (idx[heap[p]] <= idx[heap[c]]) break;
        const int64_t s = heap[p];
        heap[p] = heap[c];
        heap[c] = s;
        c = p;
      }
      ++next;
    }
    const int64_t best = heap[0];
    heap[0] = heap[--size];
    for (int64_t r = 0;;) {
      int64_t ch = 2 * r + 1;
      if (ch >= size) break;
      if (ch + 1 < size && idx[heap[ch + 1]] < idx[heap[ch]]) ++ch;
      if (idx[heap[r]] <= idx[heap[ch]]) break;
      const int64_t s = heap[r];
      heap[r] = heap[ch];
      heap[ch] = s;
      r = ch;
    }
    taken[best] = 1;
    out[t] = idx[best];
  }
}

}  // namespace unc
}  // namespace svp
