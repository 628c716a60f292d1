// Engines: the state of a k-center run over a set of points, and the one
// primitive every driver (single process, pruned, distributed) is built on:
// "add these centers; tell me the best candidates".
//
// Values are squared distances in the working space (Euclidean: the input;
// cosine: rows scaled to unit norm), accumulated in Acc (float, or double for
// float64 input and for float32 input whose squares would overflow).
#pragma once

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"
#include "svp/common.h"
#include "svp/exactness.h"

namespace svp {
namespace cpu {

inline float half_bits_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      int s = 0;
      while (!(mant & 0x400u)) { mant <<= 1; ++s; }
      bits = sign | (static_cast<uint32_t>(127 - 14 - s) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Strict total order on candidates: larger value first, then lower index.
inline bool better(double v1, int64_t i1, double v2, int64_t i2) {
  return v1 > v2 || (v1 == v2 && i1 < i2);
}

// A row's state after its distance d to one more center (ordinal `center`):
// the minimum m, the second minimum m2 (the lower bound the float64 tie test
// uses for every other center) and the center that gave m. Returns whether m
// moved. Every engine updates rows through this; the per-ISA kernels (refresh_update,
// the scan's update_min) spell it out, as they must not share inline code.
// Written without branches: whether a distance lowers a minimum is a coin
// flip the branch predictor keeps missing.
template <typename Acc>
inline bool take_center_distance(Acc d, int64_t center, Acc& m, Acc& m2, int64_t& assign) {
  const Acc m0 = m, m20 = m2;
  const bool nearer = d < m0;
  m2 = nearer ? m0 : (d < m20 ? d : m20);
  m = nearer ? d : m0;
  assign = nearer ? center : assign;
  return nearer;
}

struct Top2 {
  double v1 = -1, v2 = -1;
  int64_t i1 = -1, i2 = -1;
  void push(double v, int64_t i) {
    if (i1 < 0 || better(v, i, v1, i1)) {
      v2 = v1;
      i2 = i1;
      v1 = v;
      i1 = i;
    } else if (i2 < 0 || better(v, i, v2, i2)) {
      v2 = v;
      i2 = i;
    }
  }
  void merge(const Top2& o) {
    if (o.i1 >= 0) push(o.v1, o.i1);
    if (o.i2 >= 0) push(o.v2, o.i2);
  }
};

using svp::ErrorModel;

// A live point whose value lies in the ambiguity band of a step.
struct BandMember {
  int64_t index;
  double m;        // its current min squared distance (fast arithmetic)
  double m2;       // a lower bound on the distance to any center but `assign`
  int64_t assign;  // ordinal of the center that gave m
};

// How rows reach the kernels: the matrix, the kernel table, and (cosine) the
// per-row scale 1/||x|| in Acc for the fast path and the float64 norms for the
// exact path, which normalises by division (x / ||x||, as a float64 reference
// would, so rows that are positive multiples of each other are exactly equal).
// A center: a row of this engine's matrix (row >= 0), or a vector given by
// the caller (row = -1), e.g. one broadcast by another rank. raw points at D
// elements of the matrix's dtype in both cases.
struct CenterRef {
  int64_t row;
  const char* raw;
};

template <typename Acc>
struct RowSource {
  MatrixView X;
  const KernelTable* k = nullptr;
  const Acc* scale = nullptr;       // [N] or null (Euclidean)
  const double* norm64 = nullptr;   // [N] or null (Euclidean)

  D2RowsFn<Acc> d2() const;
  CenterRef ref(int64_t r) const { return {r, X.row(r)}; }
  // a center in the working space, float64: out[D]
  void center64(const CenterRef& c, double* out) const;
  void center64(int64_t r, double* out) const { center64(ref(r), out); }
  // the same rounded to Acc
  void center(const CenterRef& c, Acc* out) const;
};

template <>
inline D2RowsFn<float> RowSource<float>::d2() const { return k->d2_rows_f32; }
template <>
inline D2RowsFn<double> RowSource<double>::d2() const { return k->d2_rows_f64; }

inline double raw_elem(DType t, const char* row, int64_t j) {
  switch (t) {
    case DType::f32: { float f; std::memcpy(&f, row + 4 * j, 4); return f; }
    case DType::f64: { double v; std::memcpy(&v, row + 8 * j, 8); return v; }
    case DType::f16: { uint16_t h; std::memcpy(&h, row + 2 * j, 2); return half_bits_to_float(h); }
    case DType::bf16: {
      uint16_t h;
      std::memcpy(&h, row + 2 * j, 2);
      uint32_t b = static_cast<uint32_t>(h) << 16;
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    }
  }
  return 0;
}

template <typename Acc>
inline void RowSource<Acc>::center64(const CenterRef& c, double* out) const {
  const int64_t D = X.cols;
  for (int64_t j = 0; j < D; ++j) out[j] = raw_elem(X.dtype, c.raw, j);
  if (!norm64) return;
  double nrm;
  if (c.row >= 0) {
    nrm = norm64[c.row];
  } else {  // the same arithmetic as the owner's norm (row_facts)
    RowFacts f;
    k->row_facts(X.dtype, c.raw, D, &f);
    nrm = std::sqrt(f.sumsq);
  }
  for (int64_t j = 0; j < D; ++j) out[j] /= nrm;
}

// center64 rounded to Acc, by the vector kernel (the same arithmetic)
template <typename Acc>
inline void RowSource<Acc>::center(const CenterRef& c, Acc* out) const {
  double nrm = 0;  // Euclidean: no division
  if (norm64) {
    if (c.row >= 0) {
      nrm = norm64[c.row];
    } else {
      RowFacts f;
      k->row_facts(X.dtype, c.raw, X.cols, &f);
      nrm = std::sqrt(f.sumsq);
    }
  }
  if constexpr (std::is_same<Acc, float>::value)
    k->center_vec_f32(X.dtype, c.raw, X.cols, nrm, out);
  else
    k->center_vec_f64(X.dtype, c.raw, X.cols, nrm, out);
}

template <typename Acc>
class Engine {
 public:
  virtual ~Engine() = default;
  virtual const RowSource<Acc>& src_ref() const = 0;
  // Remove a point from the candidates (picked or already selected).
  virtual void exclude(int64_t row) = 0;
  // Apply q centers, with their ordinals in the run's center list.
  virtual void add_centers(const CenterRef* centers, const int64_t* ordinals, int64_t q) = 0;
  // The two best live candidates. Every live point whose value could lie in
  // the band [v1 - 2E(v1), v1] is up to date when this returns.
  virtual Top2 top2(const ErrorModel& err) = 0;
  // The live points with value >= thr.
  virtual void band(double thr, std::vector<BandMember>& out) = 0;
  // The batched driver's candidates: the (at most) T best live points, by
  // value then lower index, up to date against every center added, appended
  // to out in that order; returns an upper bound on the value of every other
  // live point (-1 when there is none).
  virtual double top_candidates(int64_t T, std::vector<BandMember>& out) = 0;
  // Point-center distances computed so far.
  virtual int64_t distance_evals() const = 0;
  // Of those, the pairs that went through the product screen
  // (product_screen.h), and the fast distances the screen left to compute.
  virtual int64_t product_pairs() const { return 0; }
  virtual int64_t product_recomputes() const { return 0; }
  // The engine's state in row order (a checkpoint): m and m2 (m2 a lower bound
  // on the distance to every other center, floors included), assign, and how
  // many centers each row has seen (`centers` for engines that keep every row
  // current).
  virtual void export_state(double* m, double* m2, int64_t* assign, int64_t* fresh,
                            int64_t centers) const = 0;
  // Take over such a state after `centers` centers (rows, in ordinal order,
  // in `center_rows`); returns false when this engine cannot (a row that has
  // not seen every center, for an engine that keeps every row current).
  virtual bool adopt_state(const double* m, const double* m2, const int64_t* assign,
                           const int64_t* fresh, int64_t centers, const int64_t* center_rows) = 0;
  // The float64 minimum over `centers` of the squared distance to ycenter
  // (a point scaled to the working space, float64), given an upper bound on
  // it. Engines that know the geometry skip centers that cannot beat `upper`.
  // evals: incremented by the float64 distances computed.
  virtual double exact_min(const double* ycenter, double upper, const int64_t* centers,
                           int64_t K, int threads, int64_t* evals);
};

// The T best of `pool` (value, index pairs of live points) by value then lower
// index, appended to out as members with their state from m, m2, assign;
// returns the value of the best one left out (-1 when none is). Shared by the
// engines' top_candidates.
template <typename Acc, typename MFn>
double select_top(std::vector<std::pair<double, int64_t>>& pool, int64_t T, MFn member,
                  std::vector<BandMember>& out) {
  auto first = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) {
    return better(a.first, a.second, b.first, b.second);
  };
  const int64_t n = static_cast<int64_t>(pool.size());
  double outside = -1;
  if (n > T) {
    std::nth_element(pool.begin(), pool.begin() + T, pool.end(), first);
    outside = pool[static_cast<size_t>(T)].first;  // the best of those left out
    pool.resize(static_cast<size_t>(T));
  }
  std::sort(pool.begin(), pool.end(), first);
  for (const auto& p : pool) out.push_back(member(p.second));
  return outside;
}

// float64 squared distances from rows[0..cnt) (working space: normalised by
// division for cosine) to ycenter (already in the working space).
void exact_d2_rows(const MatrixView& X, const KernelTable& k, const double* norm64,
                   const int64_t* rows, int64_t cnt, const double* ycenter, double* out);

// exact_min without geometry: every center, in float64.
double exact_min_all(const MatrixView& X, const KernelTable& k, const double* norm64,
                     const double* ycenter, const int64_t* centers, int64_t K, int threads);

template <typename Acc>
inline double Engine<Acc>::exact_min(const double* ycenter, double upper, const int64_t* centers,
                                     int64_t K, int threads, int64_t* evals) {
  (void)upper;
  *evals += K;
  return exact_min_all(src_ref().X, *src_ref().k, src_ref().norm64, ycenter, centers, K, threads);
}

}  // namespace cpu
}  // namespace svp
