// CUDA uncertainty: the twin of csrc/cpu/uncertainty.cpp, with the contract of
// svp/uncertainty_exact.h (the same keys, bounds, tie rule and greedy code),
// so that the GPU top-k equals the CPU's index for index.
//
// One warp per row computes the fast key, its bound and the score in one pass
// over the row (a second sweep over the same row hits L1). The certification
// then runs on the device without host round trips: a stable radix sort of
// the keys (rounded to float32: any order is sound, a near-sorted one makes
// small groups), prefix minima of the separation values and suffix maxima of
// the upper bounds (CUB scans), the end of the group holding position k - 1
// (an atomic minimum), the rows of larger groups compacted (CUB select) and
// recomputed in float64 by a warp each, and one thread per group for the
// greedy order with ties. The host synchronises once, to report bad input.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common.cuh"
#include "launch.cuh"
#include "svp/uncertainty_exact.h"

namespace svp {
namespace cuda {

namespace {

using unc::KeyBound;

// This backend's fast pass (svp/uncertainty_exact.h, FastModel): CUDA's expf
// within 2 ulp and logf within 1 ulp (CUDA C++ Programming Guide, Mathematical
// Functions; the build uses no fast-math), so within 4 and 2 2^-24 (5 and 3
// here); the terms of T, S, U and H summed in float64 in any order:
// (C + 64) 2^-53; V in float32 lanes (at most C/32 + 1 additions each) and a
// float64 butterfly; a product of two float32 values is exact in float64 (2^-53
// allowed).
unc::FastModel cuda_fast_model(long long C) {
  unc::FastModel m;
  m.exp_rel = 5.0 * unc::kU32;
  m.log_rel = 3.0 * unc::kU32;
  m.sum_rel = (static_cast<double>(C) + 64.0) * unc::kU64;
  m.aux_sum_rel = 1.01 * (static_cast<double>(C) / 32.0 + 8.0) * unc::kU32 + m.sum_rel;
  m.prod_rel = unc::kU64;
  return m;
}

template <typename T>
__device__ inline float as_float(const char* row, long long j) {
  return static_cast<float>(Elem<T>::get(row, j));
}

__device__ inline void top2_merge(double& m1, double& m2, double o1, double o2) {
  const double hi = fmax(m1, o1);
  m2 = fmax(fmin(m1, o1), fmax(m2, o2));
  m1 = hi;
}

__device__ inline double warp_min(double v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmin(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

__device__ inline float round_up_to_float(double e) {
  float f = __double2float_ru(e);
  return f;
}

// The largest and second largest entry of a row as a multiset, over the warp
// (every lane gets them), in float64.
template <typename T>
__device__ inline void row_top2(const char* row, long long C, int lane, double* t1, double* t2) {
  double m1 = -INFINITY, m2 = -INFINITY;
  for (long long j = lane; j < C; j += 32) {
    const double v = static_cast<double>(Elem<T>::get(row, j));
    m2 = fmax(m2, fmin(m1, v));
    m1 = fmax(m1, v);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const double o1 = __shfl_xor_sync(0xffffffffu, m1, off);
    const double o2 = __shfl_xor_sync(0xffffffffu, m2, off);
    top2_merge(m1, m2, o1, o2);
  }
  *t1 = m1;
  *t2 = m2;
}

// The float64 formulas for one row (valid input), by a warp; every lane gets
// the result.
template <typename T>
__device__ KeyBound exact_row_warp(const char* row, long long C, UncertaintyMethod method,
                                   ScoreInput input, int lane) {
  double top1, top2;
  row_top2<T>(row, C, lane, &top1, &top2);
  if (input == ScoreInput::probs) {
    double H = 0;
    if (method == UncertaintyMethod::entropy) {
      for (long long j = lane; j < C; j += 32) {
        const double p = static_cast<double>(Elem<T>::get(row, j));
        if (p > 0) H -= p * log(p);
      }
      H = warp_sum(H);
    }
    return unc::exact_probs(method, top1, C > 1 ? top2 : 0.0, H);
  }
  double T1 = 0, U = 0;
  long long n_max = 0;
  for (long long j = lane; j < C; j += 32) {
    const double d = static_cast<double>(Elem<T>::get(row, j)) - top1;
    const double e = exp(d);
    if (d < 0) {
      T1 += e;
    } else {
      ++n_max;
    }
    if (method == UncertaintyMethod::entropy) U += e * fmin(-d, 1.0e4);  // e = 0 below -746
  }
  T1 = warp_sum(T1);
  U = warp_sum(U);
  n_max = warp_sum(n_max);
  return unc::exact_logits(method, T1, static_cast<double>(n_max), U,
                           C > 1 ? top2 - top1 : -INFINITY);
}

// What every pass kernel needs.
struct PassArgs {
  const char* X;
  long long N, C, row_bytes;
  UncertaintyMethod method;
  ScoreInput input;
  int check_finite;
  double tol;
  unc::FastPlan plan;
  unc::FastModel fm;
};

// The first sweep over a row, by a warp: finiteness (first bad linear index),
// for probabilities the distribution check, and the two largest entries (as a
// multiset, in float64; every lane gets them). Returns false (and records it)
// for a bad row.
template <typename T>
__device__ bool first_sweep(const PassArgs& a, const char* row, long long r, int lane,
                            unsigned long long* bad, double* t1, double* t2) {
  unsigned long long first_bad = ~0ull;
  double lo = INFINITY, sum = 0, m1 = -INFINITY, m2 = -INFINITY;
  for (long long j = lane; j < a.C; j += 32) {
    const double v = static_cast<double>(Elem<T>::get(row, j));
    if (a.check_finite && !isfinite(v)) {
      const unsigned long long lin = static_cast<unsigned long long>(r * a.C + j);
      first_bad = lin < first_bad ? lin : first_bad;
    }
    lo = fmin(lo, v);
    sum += v;
    m2 = fmax(m2, fmin(m1, v));
    m1 = fmax(m1, v);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned long long ob = __shfl_xor_sync(0xffffffffu, first_bad, off);
    first_bad = ob < first_bad ? ob : first_bad;
    const double o1 = __shfl_xor_sync(0xffffffffu, m1, off);
    const double o2 = __shfl_xor_sync(0xffffffffu, m2, off);
    top2_merge(m1, m2, o1, o2);
  }
  *t1 = m1;
  *t2 = m2;
  if (first_bad != ~0ull) {
    if (lane == 0) atomicMin(bad, first_bad);
    return false;
  }
  if (a.input == ScoreInput::probs) {
    lo = warp_min(lo);
    sum = warp_sum(sum);
    if (lo < -a.tol || fabs(sum - 1.0) > a.tol) {
      if (lane == 0) atomicMin(bad + 1, static_cast<unsigned long long>(r));
      return false;
    }
  }
  return true;
}

// The fast pass of a float32/16/bf16 row (valid input, its two largest entries
// known), by a warp: the second sweep, from L1.
template <typename T>
__device__ KeyBound fast_row_warp(const PassArgs& a, const char* row, int lane, double top1,
                                  double top2) {
  if (a.input == ScoreInput::probs) {
    if (a.method != UncertaintyMethod::entropy)
      return unc::exact_probs(a.method, top1, a.C > 1 ? top2 : 0.0, 0.0);  // float64 values
    if (top1 > 1.0) return exact_row_warp<T>(row, a.C, a.method, a.input, lane);
    double H = 0;
    for (long long j = lane; j < a.C; j += 32) {
      const float p = as_float<T>(row, j);
      if (p >= 1.17549435e-38f) H -= static_cast<double>(p) * static_cast<double>(logf(p));
    }
    return unc::fast_probs_entropy(a.C, warp_sum(H), a.fm, a.plan.tie);
  }
  // x = fl32(z - m), clamped to [-104, 0]; the terms of T (or S) and U in
  // float64; V (entropy's bound only) in float32; least confidence and margin
  // bound U by the entropy instead (as on the CPU)
  const bool entropy = a.method == UncertaintyMethod::entropy;
  const float m = static_cast<float>(top1);
  double T1 = 0, U = 0;
  float Vf = 0;
  long long n_max = 0;
  for (long long j = lane; j < a.C; j += 32) {
    const float x = as_float<T>(row, j) - m;
    const float xc = fmaxf(x, -unc::kFastGapClamp);
    const float ef = expf(xc);
    const double e = static_cast<double>(ef);
    if (x < 0) {
      T1 += e;
    } else {
      ++n_max;
    }
    if (entropy) {
      U += e * static_cast<double>(-xc);  // exact product
      Vf = fmaf(ef * -xc, -xc, Vf);
    }
  }
  T1 = warp_sum(T1);
  n_max = warp_sum(n_max);
  double V = 0;
  if (entropy) {
    U = warp_sum(U);
    V = warp_sum(static_cast<double>(Vf));
  }
  const double nm = static_cast<double>(n_max);
  const double sum = a.method == UncertaintyMethod::margin ? T1 + nm : T1 + (nm - 1.0);
  KeyBound kb = unc::fast_logits(a.plan, sum, entropy ? U : -1.0, V,
                                 a.C > 1 ? top2 - top1 : -INFINITY);
  if (!(kb.err < INFINITY)) kb = exact_row_warp<T>(row, a.C, a.method, a.input, lane);
  return kb;
}

// Pass over every row: scores [N] (A: float, double for float64 input) and,
// when key is not null, keys and bounds. bad[0]: first non-finite linear
// index; bad[1]: first row that is not a probability distribution.
template <typename T, typename A>
__global__ void unc_pass(PassArgs a, A* score, double* key, float* err, unsigned long long* bad) {
  const int lane = threadIdx.x & 31;
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long r = warp; r < a.N; r += nwarps) {
    const char* row = a.X + r * a.row_bytes;
    double top1, top2;
    if (!first_sweep<T>(a, row, r, lane, bad, &top1, &top2)) continue;
    KeyBound kb;
    if constexpr (std::is_same<T, double>::value) {
      kb = exact_row_warp<T>(row, a.C, a.method, a.input, lane);
    } else {
      kb = fast_row_warp<T>(a, row, lane, top1, top2);
    }
    if (lane == 0) {
      score[r] = static_cast<A>(kb.score) + A(0);  // +0.0, never -0.0
      if (key) {
        key[r] = kb.key;
        err[r] = round_up_to_float(kb.err);
      }
    }
  }
}

// --------------------------------------------------------- certification --

// Bounds on any conforming float64 value of row i (err == 0: the value).
__device__ inline double lower_of(const double* key, const float* err, long long i) {
  const double e = err[i];
  if (e == 0) return key[i];
  const double v = key[i] - e;
  return v - 2.0 * unc::kU64 * fabs(v);
}
__device__ inline double upper_of(const double* key, const float* err, long long i) {
  const double e = err[i];
  if (e == 0) return key[i];
  const double v = key[i] + e;
  return v + 2.0 * unc::kU64 * fabs(v);
}

__global__ void sort_input(const double* key, float* key32, int64_t* idx, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    key32[i] = static_cast<float>(key[i]) + 0.0f;  // one order for -0.0 and 0.0
    idx[i] = i;
  }
}

// sep[p]: the separation value of the row at sorted position p; up_rev[n-1-p]:
// its upper bound (reversed, for a suffix maximum by an inclusive scan).
__global__ void bounds_by_position(const int64_t* order, const double* key, const float* err,
                                   unc::TieModel tie, double* sep, double* up_rev, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long p = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; p < n; p += stride) {
    const long long i = order[p];
    sep[p] = tie.below(lower_of(key, err, i));
    up_rev[n - 1 - p] = upper_of(key, err, i);
  }
}

struct MinOp {
  __device__ double operator()(double a, double b) const { return fmin(a, b); }
};
struct MaxOp {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};
template <typename A>
struct MinOpT {
  __device__ A operator()(A a, A b) const { return b < a ? b : a; }
};

// Is there a split after sorted position p (p + 1 < n)?
__device__ inline bool split_after(const double* pmin, const double* smax_rev, long long p,
                                   long long n) {
  return pmin[p] > smax_rev[n - 2 - p];  // smax over positions p + 1 .. n - 1
}

// end = the first p >= k - 1 with a split after it, or n - 1.
__global__ void find_end(const double* pmin, const double* smax_rev, long long n, long long k,
                         unsigned long long* end) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long p = k - 1 + blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
       p < n - 1; p += stride) {
    if (split_after(pmin, smax_rev, p, n)) atomicMin(end, static_cast<unsigned long long>(p));
  }
}

__device__ inline bool boundary_at(const double* pmin, const double* smax_rev, long long p,
                                   long long n, long long end) {
  return p == end || split_after(pmin, smax_rev, p, n);
}

// Per position p <= end: refine[p] (a row of a larger group not yet in
// float64), group[p] (the start of a larger group); rows of groups of one are
// placed directly (out[p] for p < k).
__global__ void mark_groups(const double* pmin, const double* smax_rev, const int64_t* order,
                            const float* err, long long n, long long k,
                            const unsigned long long* end_ptr, unsigned char* refine,
                            unsigned char* group, int64_t* out) {
  const long long end = static_cast<long long>(*end_ptr);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long p = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; p < n; p += stride) {
    unsigned char rf = 0, gs = 0;
    if (p <= end) {
      const bool b = boundary_at(pmin, smax_rev, p, n, end);
      const bool s = p == 0 || boundary_at(pmin, smax_rev, p - 1, n, end);
      if (s && b) {
        if (p < k) out[p] = order[p];
      } else {
        rf = err[order[p]] != 0.0f;
        gs = s;
      }
    }
    refine[p] = rf;
    group[p] = gs;
  }
}

// A warp per listed position: the row recomputed in float64.
template <typename T, typename A>
__global__ void refine_rows(PassArgs a, const int64_t* order, const int64_t* list,
                            const int64_t* count, A* score, double* key, float* err) {
  const int lane = threadIdx.x & 31;
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  const long long cnt = *count;
  for (long long q = warp; q < cnt; q += nwarps) {
    const long long i = order[list[q]];
    const KeyBound kb = exact_row_warp<T>(a.X + i * a.row_bytes, a.C, a.method, a.input, lane);
    if (lane == 0) {
      score[i] = static_cast<A>(kb.score) + A(0);
      key[i] = kb.key;
      err[i] = 0.0f;
    }
  }
}

// Scratch of the group kernel, by sorted position.
struct GroupScratch {
  int64_t* pos;
  double* g;
  int64_t* idx;
  double* g_sorted;
  int64_t* idx_sorted;
  int64_t* heap;
  unsigned char* taken;
};

// A thread per larger group: its rows sorted by (float64 value descending,
// index ascending), then the greedy rule with ties (the CPU's code).
__global__ void order_groups(const double* pmin, const double* smax_rev, const int64_t* order,
                             const double* key, long long n, long long k,
                             const unsigned long long* end_ptr, const int64_t* list,
                             const int64_t* count, unc::TieModel tie, GroupScratch s,
                             int64_t* out) {
  const long long end = static_cast<long long>(*end_ptr);
  const long long cnt = *count;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long q = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; q < cnt; q += stride) {
    const long long a = list[q];
    long long b = a;
    while (!boundary_at(pmin, smax_rev, b, n, end)) ++b;
    const long long m = b - a + 1;
    for (long long j = 0; j < m; ++j) {
      s.pos[a + j] = j;
      s.idx[a + j] = order[a + j];
      s.g[a + j] = key[order[a + j]];
    }
    unc::heap_sort_desc(s.pos + a, m, s.g + a, s.idx + a);
    for (long long j = 0; j < m; ++j) {
      s.g_sorted[a + j] = s.g[a + s.pos[a + j]];
      s.idx_sorted[a + j] = s.idx[a + s.pos[a + j]];
    }
    const long long n_out = m < k - a ? m : k - a;
    unc::greedy_with_ties(s.g_sorted + a, s.idx_sorted + a, m, n_out, tie, s.heap + a,
                          s.taken + a, out + a);
  }
}

template <typename A>
__global__ void gather_top(const int64_t* out, const A* score, long long k, int64_t* order,
                           A* top) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < k; j += stride) {
    const long long i = out[j];
    order[j] = i;
    if (top) top[j] = score[i];
  }
}

__global__ void set_u64(unsigned long long* p, unsigned long long v) { *p = v; }

// --------------------------------------------------------------- layout --

struct ULayout {
  unsigned long long* bad = nullptr;
  unsigned long long* end = nullptr;
  int64_t* counts = nullptr;  // [0]: rows refined, [1]: larger groups
  double* key = nullptr;
  float* err = nullptr;
  float* key32_in = nullptr;
  float* key32_out = nullptr;
  int64_t* idx_in = nullptr;
  int64_t* order = nullptr;
  double* sep = nullptr;
  double* pmin = nullptr;
  double* up_rev = nullptr;
  double* smax_rev = nullptr;
  unsigned char* refine = nullptr;
  unsigned char* group = nullptr;
  int64_t* refine_list = nullptr;
  int64_t* group_list = nullptr;
  int64_t* out = nullptr;
  GroupScratch gs{};
  void* top_tmp = nullptr;
  void* temp = nullptr;
  size_t temp_bytes = 0;
  int64_t bytes = 0;
};

template <typename A>
size_t cub_temp_bytes(long long n, long long k) {
  size_t b = 0, t = 0;
  cub::DeviceRadixSort::SortPairsDescending(nullptr, t, static_cast<const float*>(nullptr),
                                            static_cast<float*>(nullptr),
                                            static_cast<const int64_t*>(nullptr),
                                            static_cast<int64_t*>(nullptr), n);
  b = t > b ? t : b;
  t = 0;
  cub::DeviceScan::InclusiveScan(nullptr, t, static_cast<const double*>(nullptr),
                                 static_cast<double*>(nullptr), MinOp(), n);
  b = t > b ? t : b;
  t = 0;
  cub::DeviceScan::InclusiveScan(nullptr, t, static_cast<const double*>(nullptr),
                                 static_cast<double*>(nullptr), MaxOp(), n);
  b = t > b ? t : b;
  t = 0;
  cub::DeviceSelect::Flagged(nullptr, t, static_cast<const int64_t*>(nullptr),
                             static_cast<const unsigned char*>(nullptr),
                             static_cast<int64_t*>(nullptr), static_cast<int64_t*>(nullptr), n);
  b = t > b ? t : b;
  t = 0;
  if (k > 0) {
    cub::DeviceScan::InclusiveScan(nullptr, t, static_cast<const A*>(nullptr), static_cast<A*>(nullptr),
                                   MinOpT<A>(), k);
    b = t > b ? t : b;
  }
  return b;
}

ULayout ulayout(void* base, int64_t cap, const DeviceMatrix& X, int64_t k) {
  ULayout L;
  Arena a(base, cap);
  const long long n = X.rows;
  L.bad = a.take<unsigned long long>(2);
  if (k > 0) {
    const bool f64 = X.dtype == DType::f64;
    L.end = a.take<unsigned long long>(1);
    L.counts = a.take<int64_t>(2);
    L.key = a.take<double>(n);
    L.err = a.take<float>(n);
    L.key32_in = a.take<float>(n);
    L.key32_out = a.take<float>(n);
    L.idx_in = a.take<int64_t>(n);
    L.order = a.take<int64_t>(n);
    L.sep = a.take<double>(n);
    L.pmin = a.take<double>(n);
    L.up_rev = a.take<double>(n);
    L.smax_rev = a.take<double>(n);
    L.refine = a.take<unsigned char>(n);
    L.group = a.take<unsigned char>(n);
    L.refine_list = a.take<int64_t>(n);
    L.group_list = a.take<int64_t>(n);
    L.out = a.take<int64_t>(n);
    L.gs.pos = a.take<int64_t>(n);
    L.gs.g = a.take<double>(n);
    L.gs.idx = a.take<int64_t>(n);
    L.gs.g_sorted = a.take<double>(n);
    L.gs.idx_sorted = a.take<int64_t>(n);
    L.gs.heap = a.take<int64_t>(n);
    L.gs.taken = a.take<unsigned char>(n);
    L.top_tmp = f64 ? static_cast<void*>(a.take<double>(k)) : static_cast<void*>(a.take<float>(k));
    L.temp_bytes = f64 ? cub_temp_bytes<double>(n, k) : cub_temp_bytes<float>(n, k);
    L.temp = a.take<unsigned char>(static_cast<int64_t>(L.temp_bytes));
  }
  L.bytes = a.used();
  return L;
}

int blocks_for(long long n, int threads, int cap) {
  const long long b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > cap ? cap : b));
}

template <typename T, typename A>
void run(const DeviceMatrix& X, const UncertaintyCudaOptions& opt, const ULayout& L, A* scores,
         int64_t k, int64_t* order_out, A* top, UncertaintyStats* stats, cudaStream_t stream) {
  const char* name = opt.arg_name ? opt.arg_name : "x";
  const long long n = X.rows, C = X.cols;
  PassArgs a;
  a.X = static_cast<const char*>(X.data);
  a.N = n;
  a.C = C;
  a.row_bytes = X.row_stride * static_cast<long long>(dtype_size(X.dtype));
  a.method = opt.method;
  a.input = opt.input;
  a.check_finite = opt.check_finite ? 1 : 0;
  a.tol = opt.probs_tolerance;
  a.fm = cuda_fast_model(C);
  a.plan = unc::fast_plan(opt.method, C, a.fm,
                          unc::tie_model(opt.method, opt.input, C, opt.probs_tolerance));
  const unc::TieModel tie = a.plan.tie;
  const unsigned long long init_bad[2] = {~0ull, ~0ull};
  SVP_CUDA(cudaMemcpyAsync(L.bad, init_bad, sizeof(init_bad), cudaMemcpyHostToDevice, stream));
  const int pass_grid = blocks_for(n, 8, 8192);  // 8 warps (rows) per block
  launch<unc_pass<T, A>>(pass_grid, 256, 0, stream, a, scores, k > 0 ? L.key : nullptr, L.err, L.bad);
  unsigned long long bad[2];
  SVP_CUDA(cudaMemcpyAsync(bad, L.bad, sizeof(bad), cudaMemcpyDeviceToHost, stream));
  SVP_CUDA(cudaStreamSynchronize(stream));
  if (bad[0] != ~0ull) {
    const long long r = static_cast<long long>(bad[0] / static_cast<unsigned long long>(C));
    const long long c = static_cast<long long>(bad[0] % static_cast<unsigned long long>(C));
    throw ValueError(format("%s must be finite, got a NaN or infinity at row %lld, column %lld", name, r, c));
  }
  if (bad[1] != ~0ull)
    throw ValueError(format(
        "%s row %lld is not a probability distribution (entries must be >= 0 and sum to 1 "
        "within %g); pass inputs='logits' if these are logits",
        name, static_cast<long long>(bad[1]), opt.probs_tolerance));
  if (k <= 0) {
    if (stats) *stats = UncertaintyStats{};
    return;
  }
  const int g = blocks_for(n, 256, 4096);
  size_t tb = L.temp_bytes;
  launch<sort_input>(g, 256, 0, stream, L.key, L.key32_in, L.idx_in, n);
  SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(L.temp, tb, L.key32_in, L.key32_out, L.idx_in,
                                                     L.order, n, 0, 32, stream));
  launch<bounds_by_position>(g, 256, 0, stream, L.order, L.key, L.err, tie, L.sep, L.up_rev, n);
  tb = L.temp_bytes;
  SVP_CUDA(cub::DeviceScan::InclusiveScan(L.temp, tb, L.sep, L.pmin, MinOp(), n, stream));
  tb = L.temp_bytes;
  SVP_CUDA(cub::DeviceScan::InclusiveScan(L.temp, tb, L.up_rev, L.smax_rev, MaxOp(), n, stream));
  launch<set_u64>(1, 1, 0, stream, L.end, static_cast<unsigned long long>(n - 1));
  if (n > k) {
    launch<find_end>(blocks_for(n - k + 1, 256, 4096), 256, 0, stream, L.pmin, L.smax_rev, n, k, L.end);
  }
  launch<mark_groups>(g, 256, 0, stream, L.pmin, L.smax_rev, L.order, L.err, n, k, L.end, L.refine,
                                     L.group, L.out);
  // idx_in still holds 0 .. n-1 (the sort only read it): the positions to select
  tb = L.temp_bytes;
  SVP_CUDA(cub::DeviceSelect::Flagged(L.temp, tb, L.idx_in, L.refine, L.refine_list, L.counts, n,
                                      stream));
  tb = L.temp_bytes;
  SVP_CUDA(cub::DeviceSelect::Flagged(L.temp, tb, L.idx_in, L.group, L.group_list, L.counts + 1, n,
                                      stream));
  // the refined rows: a warp each, as many as the device holds at once (the
  // count is on the device; warps beyond it return at once)
  launch<refine_rows<T, A>>(blocks_for(n, 8, 2048), 256, 0, stream, a, L.order, L.refine_list, L.counts,
                                                               scores, L.key, L.err);
  launch<order_groups>(blocks_for(n, 128, 1024), 128, 0, stream, L.pmin, L.smax_rev, L.order, L.key, n, k,
                                                              L.end, L.group_list, L.counts + 1, tie,
                                                              L.gs, L.out);
  A* top_tmp = static_cast<A*>(L.top_tmp);
  launch<gather_top<A>>(blocks_for(k, 256, 4096), 256, 0, stream, L.out, scores, k, order_out,
                                                              top ? top_tmp : nullptr);
  if (top) {
    // the reported scores follow the order (they differ from the ranked keys
    // only by their final roundings)
    tb = L.temp_bytes;
    SVP_CUDA(cub::DeviceScan::InclusiveScan(L.temp, tb, top_tmp, top, MinOpT<A>(), k, stream));
  }
  if (stats) {
    unsigned long long end = 0;
    long long counts[2] = {0, 0};
    SVP_CUDA(cudaMemcpyAsync(&end, L.end, sizeof(end), cudaMemcpyDeviceToHost, stream));
    SVP_CUDA(cudaMemcpyAsync(counts, L.counts, sizeof(counts), cudaMemcpyDeviceToHost, stream));
    SVP_CUDA(cudaStreamSynchronize(stream));
    stats->candidates = static_cast<int64_t>(end) + 1;
    stats->rows_refined = counts[0];
    stats->tie_groups = counts[1];
    stats->passes = 1;
  }
}

}  // namespace

int64_t uncertainty_cuda_workspace(const DeviceMatrix& X, int64_t k) {
  DeviceGuard guard(X.device);
  return ulayout(nullptr, 0, X, k).bytes;
}

void uncertainty_cuda(const DeviceMatrix& X, const UncertaintyCudaOptions& opt, void* workspace,
                      int64_t workspace_bytes, void* scores, int64_t k, int64_t* order, void* top,
                      UncertaintyStats* stats) {
  const char* name = opt.arg_name ? opt.arg_name : "x";
  const long long n = X.rows, C = X.cols;
  SVP_CHECK_ARG(n >= 1 && C >= 1, "%s must be a non-empty 2-D array, got shape (%lld, %lld)", name, n, C);
  SVP_CHECK_ARG(k <= n, "budget must be at most the number of rows (%lld), got %lld", n, (long long)k);
  DeviceGuard guard(X.device);
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(X.stream);
  const ULayout L = ulayout(workspace, workspace_bytes, X, k);
  switch (X.dtype) {
    case DType::f32:
      run<float, float>(X, opt, L, static_cast<float*>(scores), k, order, static_cast<float*>(top),
                        stats, stream);
      break;
    case DType::f16:
      run<__half, float>(X, opt, L, static_cast<float*>(scores), k, order, static_cast<float*>(top),
                         stats, stream);
      break;
    case DType::bf16:
      run<__nv_bfloat16, float>(X, opt, L, static_cast<float*>(scores), k, order,
                                static_cast<float*>(top), stats, stream);
      break;
    case DType::f64:
      run<double, double>(X, opt, L, static_cast<double*>(scores), k, order,
                          static_cast<double*>(top), stats, stream);
      break;
  }
}

}  // namespace cuda
}  // namespace svp
