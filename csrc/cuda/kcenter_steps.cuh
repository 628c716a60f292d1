// The device side of CUDA k-center shared by the scan and the pruned kernels:
// parameters, row distances, float64 distances, and the certified decision of
// a step (the same rule as csrc/cpu/kcenter.cpp).
#pragma once

#include <cooperative_groups.h>

#include "common.cuh"
#include "svp/exactness.h"

namespace svp {
namespace cuda {

namespace cg = cooperative_groups;

constexpr int kThreads = 256;  // threads per block of the step kernels
constexpr long long kSlab = 256;  // members per work item of the pruned per-step scan

// Run state kept on the device between chunks of steps.
struct KcState {
  long long t;                // next pick to decide
  double prev_radius;         // squared radius of the previous pick (working space)
  long long ambiguous_steps;  // steps decided in float64
  long long exact_evals;      // float64 distances computed
  long long distance_evals;   // fast-path distances computed
  long long scanned;          // pruned: members in the ranges scanned (for the fallback)
  long long pass_picks;       // batched: picks certified by the last pass
  long long plain_steps;      // batched: passes that could certify none and took a plain step
};

template <typename Acc>
struct KcParams {
  const char* X;
  long long N, D;
  long long row_bytes;  // distance between rows, bytes
  DType dtype;
  Metric metric;
  const Acc* scale;      // [N] 1/||x|| (cosine) or null
  const double* norm64;  // [N] ||x|| (cosine) or null
  Acc* m;                // [N] min squared distance; -1 = center or picked
  Acc* m2;               // [N] lower bound on the distance to any other center
  long long* assign;     // [N] ordinal of the center that gave m
  const long long* init_rows;  // [n_sel] already selected rows
  long long n_sel;
  long long* picks;  // [budget] (device)
  double* radii;     // [budget] or null
  long long budget;
  KcState* state;
  Top4* blockres;  // [2][max_blocks]: block candidates, by step parity
  double* blocksecond;  // [2][max_blocks]: largest second-best of a thread
  int max_blocks;
  long long* band_idx;           // [N]
  unsigned long long* band_val;  // [N] float64 bits (non-negative: ordered as integers)
  int* band_flag;                // [N] band slots of the members that need a full minimum
  int* band_count;               // [2]
  int* band_any;                 // [2] how many members need the full float64 minimum
  ErrorModel err, tie;
  int G;    // lanes per row: a power of two <= 32
  int vec;  // rows are 16-byte aligned: vector loads
  // pruned method (n_cells > 0): per-point arrays above are in cell order
  long long n_cells;
  const long long* perm;   // [N] position -> row
  const long long* where;  // [N] row -> position
  const int* cellpos;      // [N] position -> cell
  const long long* lo;     // [n_cells + 1] member ranges
  const double* p;         // [N] ||x - mu_cell||, ascending within a cell
  const float* centroid;   // [n_cells, D] (working space)
  const double* radius;    // [n_cells] max p of the cell
  Top2* ctop;              // [n_cells] best two live members (row ids)
  double* m2floor;         // [n_cells] lower bound for skipped centers
  int* active;             // [n_cells] cells that may change this step
  int* n_active;           // [2] by step parity
  int* slab_cell;          // [slab_cap] work items: a cell and a slice of its members
  long long* slab_range;   // [2 slab_cap] member range [qa, qb) of each
  double* slab_dc;         // [slab_cap] distance of the center to the slab's centroid
  int* n_slabs;            // [2] by step parity
  long long slab_cap;
};

// The matrix part of KcParams, shared by the single-process driver and the
// shard: rows, shape, dtype, metric, and the cosine norms (nullptr otherwise).
template <typename Acc>
KcParams<Acc> matrix_params(const DeviceMatrix& X, Metric metric, const double* norm64,
                            const void* scale) {
  KcParams<Acc> p{};
  p.X = static_cast<const char*>(X.data);
  p.N = X.rows;
  p.D = X.cols;
  p.row_bytes = X.row_stride * static_cast<long long>(dtype_size(X.dtype));
  p.dtype = X.dtype;
  p.metric = metric;
  p.norm64 = metric == Metric::cosine ? norm64 : nullptr;
  p.scale = metric == Metric::cosine ? static_cast<const Acc*>(scale) : nullptr;
  return p;
}

// Position of row r in the per-point arrays (identity for the scan).
template <typename Acc>
__device__ inline long long pos_of(const KcParams<Acc>& p, long long r) {
  return p.where ? __ldcg(p.where + r) : r;
}
template <typename Acc>
__device__ inline long long row_of(const KcParams<Acc>& p, long long q) {
  return p.perm ? p.perm[q] : q;
}

// Row of the center with this ordinal: already selected rows first, then the
// picks (written by block 0 during the run: read past the L1 cache).
__device__ inline long long center_row(const long long* init_rows, long long n_sel,
                                       const long long* picks, long long ordinal) {
  return ordinal < n_sel ? init_rows[ordinal] : __ldcg(picks + (ordinal - n_sel));
}

// A center at distance d offered to a row holding its nearest value m (from
// the center with ordinal `assign`) and its second-nearest m2: the device twin
// of take_center_distance (csrc/cpu/engine.h). Returns whether m or m2 moved.
template <typename Acc>
__device__ inline bool take_center_distance(Acc d, long long center, Acc& m, Acc& m2,
                                            long long& assign) {
  if (d < m) {
    m2 = m;
    m = d;
    assign = center;
    return true;
  }
  if (d < m2) {
    m2 = d;
    return true;
  }
  return false;
}

// Squared distance of one row to a center held in shared memory, computed by
// the G lanes of a row group (lane l of G); every lane of the warp must call.
// Per lane: sequential FMA over its chunks (at most ceil(D/8) terms for
// D > 256, at most 8 + tail otherwise), then a tree over the G lanes: within
// the error model of svp/exactness.h.
template <typename T, int CPL, bool VEC>
__device__ inline float row_d2(const char* row, long long D, int G, int l, unsigned mask, float s,
                               const float* c) {
  float acc = 0.f;
  if constexpr (VEC) {
    constexpr int E = Elem<T>::per16;
    const long long nchunk = D / E;
    const uint4* p = reinterpret_cast<const uint4*>(row);
    const float4* c4 = reinterpret_cast<const float4*>(c);
    for (long long base = 0; base < nchunk; base += static_cast<long long>(G) * CPL) {
      uint4 v[CPL];
#pragma unroll
      for (int k = 0; k < CPL; ++k) {  // all loads first: several in flight
        const long long ch = base + l + static_cast<long long>(k) * G;
        v[k] = ch < nchunk ? __ldg(p + ch) : make_uint4(0u, 0u, 0u, 0u);
      }
#pragma unroll
      for (int k = 0; k < CPL; ++k) {
        const long long ch = base + l + static_cast<long long>(k) * G;
        if (ch < nchunk) {
          float x[E];
          Elem<T>::chunk(v[k], x);
#pragma unroll
          for (int q = 0; q < E / 4; ++q) {
            const float4 cc = c4[ch * (E / 4) + q];
            const float cv[4] = {cc.x, cc.y, cc.z, cc.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const float d = fmaf(x[4 * q + e], s, -cv[e]);
              acc = fmaf(d, d, acc);
            }
          }
        }
      }
    }
    for (long long j = nchunk * E + l; j < D; j += G) {
      const float d = fmaf(Elem<T>::get(row, j), s, -c[j]);
      acc = fmaf(d, d, acc);
    }
  } else {
    for (long long j = l; j < D; j += G) {
      const float d = fmaf(Elem<T>::get(row, j), s, -c[j]);
      acc = fmaf(d, d, acc);
    }
  }
  for (int off = G >> 1; off > 0; off >>= 1) acc += __shfl_xor_sync(mask, acc, off, G);
  return acc;
}

// float64 accumulation (float64 input, or float32 input whose squares would
// overflow float32): scalar loads, the same lane structure.
template <typename T>
__device__ inline double row_d2_f64(const char* row, long long D, int G, int l, unsigned mask,
                                    double s, const double* c) {
  double acc = 0.0;
  for (long long j = l; j < D; j += G) {
    const double d = fma(static_cast<double>(Elem<T>::get(row, j)), s, -c[j]);
    acc = fma(d, d, acc);
  }
  for (int off = G >> 1; off > 0; off >>= 1) acc += __shfl_xor_sync(mask, acc, off, G);
  return acc;
}

template <typename T, typename Acc, int CPL, bool VEC>
__device__ inline Acc row_dist(const char* row, long long D, int G, int l, unsigned mask, Acc s,
                               const Acc* c) {
  if constexpr (sizeof(Acc) == 4)
    return row_d2<T, CPL, VEC>(row, D, G, l, mask, s, c);
  else
    return row_d2_f64<T>(row, D, G, l, mask, s, c);
}

// Apply q centers (shared memory, q rows of cstride >= D values, the stride a
// multiple of 4 so that every center starts 16-byte aligned for the float4
// reads; ordinals ord0..ord0+q-1) to every live
// row: fused distance, min update, and this thread's best candidates. Rows are
// owned by a fixed group of G lanes (the same every step), so no other block
// touches them. exclude_row (the center itself) is marked -1 by its owner.
template <typename T, typename Acc, int CPL, bool VEC>
__device__ inline void apply_centers(const KcParams<Acc>& p, const Acc* cs, long long cstride,
                                     int q, long long ord0, long long exclude_row, Top2& top,
                                     long long& evals) {
  const int lane = threadIdx.x & 31;
  const int G = p.G;
  const int l = lane & (G - 1);
  const int slot = lane / G;
  const int rpw = 32 / G;
  const unsigned mask = G == 32 ? 0xffffffffu : (((1u << G) - 1u) << (slot * G));
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long qb = gwarp * rpw; qb < p.N; qb += nwarps * rpw) {
    const long long qq = qb + slot;  // a position (a row, for the scan)
    if (qq >= p.N) continue;         // whole group skips together
    const long long r = row_of(p, qq);
    Acc mr = p.m[qq];
    if (r == exclude_row) {
      if (l == 0) p.m[qq] = Acc(-1);
      continue;
    }
    if (mr < Acc(0)) continue;  // a center or a pick: never a candidate again
    const char* row = p.X + r * p.row_bytes;
    const Acc s = p.scale ? p.scale[r] : Acc(1);
    Acc m2v = Acc(0);
    long long as = 0;
    if (l == 0) {
      m2v = p.m2[qq];
      as = p.assign[qq];
    }
    bool changed = false;
    for (int k = 0; k < q; ++k) {
      const Acc d = row_dist<T, Acc, CPL, VEC>(row, p.D, G, l, mask, s, cs + k * cstride);
      changed |= take_center_distance(d, ord0 + k, mr, m2v, as);
    }
    if (l == 0) {
      if (changed) {
        p.m[qq] = mr;
        p.m2[qq] = m2v;
        p.assign[qq] = as;
      }
      top2_push(top, static_cast<double>(mr), r);
      evals += q;
    }
  }
}

// The "exact" float64 squared distance between a raw row ry (X's dtype, float64
// norm ny) and row z of X (warp-wide; every lane gets it): rows divided by
// their float64 norms for cosine, as a float64 reference computes them.
template <typename Acc>
__device__ inline double exact_d2_warp(const KcParams<Acc>& p, const char* ry, double ny,
                                       long long z) {
  const int lane = threadIdx.x & 31;
  const char* rz = p.X + z * p.row_bytes;
  const double nz = p.norm64 ? p.norm64[z] : 1.0;
  double acc = 0.0;
  for (long long j = lane; j < p.D; j += 32) {
    double a = elem_as_double(p.dtype, ry, j), b = elem_as_double(p.dtype, rz, j);
    if (p.norm64) {
      a /= ny;
      b /= nz;
    }
    const double d = a - b;
    acc = fma(d, d, acc);
  }
  return warp_sum(acc);
}

// The same between rows y and z of X.
template <typename Acc>
__device__ inline double exact_d2_warp(const KcParams<Acc>& p, long long y, long long z) {
  return exact_d2_warp(p, p.X + y * p.row_bytes, p.norm64 ? p.norm64[y] : 1.0, z);
}

// Loads the working-space vector of row r into shared memory (every thread
// of the block participates).
template <typename Acc>
__device__ inline void load_center(const KcParams<Acc>& p, long long r, Acc* out) {
  const char* row = p.X + r * p.row_bytes;
  const double nrm = p.norm64 ? p.norm64[r] : 1.0;
  for (long long j = threadIdx.x; j < p.D; j += blockDim.x) {
    const double v = elem_as_double(p.dtype, row, j);
    out[j] = static_cast<Acc>(p.norm64 ? v / nrm : v);
  }
}

// The block's candidates from every thread's two best: its top 4, and the
// largest second-best of any thread (a thread whose second-best lies in the
// band may hide a third member: then the band is collected explicitly).
__device__ inline void write_block_candidates(const Top2& mine, Top4* res, double* second,
                                              Top4* scratch) {
  Top4 t;
  top4_clear(t);
  top4_push(t, mine.v1, mine.i1);
  top4_push(t, mine.v2, mine.i2);
  const Top4 b = top4_block_reduce(t, scratch);
  double s2 = mine.v2;
  for (int off = 16; off > 0; off >>= 1) s2 = fmax(s2, __shfl_xor_sync(0xffffffffu, s2, off));
  __shared__ double s_sec[kThreads / 32];
  if ((threadIdx.x & 31) == 0) s_sec[threadIdx.x >> 5] = s2;
  __syncthreads();
  if (threadIdx.x == 0) {
    double m = -2.0;
    for (int w = 0; w < (blockDim.x >> 5); ++w) m = fmax(m, s_sec[w]);
    res[blockIdx.x] = b;
    second[blockIdx.x] = m;
  }
  __syncthreads();
}

// The largest second-best over all blocks (every block computes it).
__device__ inline double global_second(const double* second, int nblocks) {
  __shared__ double s_sec2[kThreads / 32];
  double m = -2.0;
  for (int b = threadIdx.x; b < nblocks; b += blockDim.x) m = fmax(m, __ldcg(second + b));
  for (int off = 16; off > 0; off >>= 1) m = fmax(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) s_sec2[threadIdx.x >> 5] = m;
  __syncthreads();
  m = -2.0;
  for (int w = 0; w < (blockDim.x >> 5); ++w) m = fmax(m, s_sec2[w]);
  __syncthreads();
  return m;
}

// The global top-4 from the block candidates of parity `par` (every block
// computes it; all get the same list).
__device__ inline Top4 global_top4(const Top4* res, int nblocks, Top4* scratch) {
  Top4 t;
  top4_clear(t);
  for (int b = threadIdx.x; b < nblocks; b += blockDim.x) {
    Top4 o;
    const double* src = reinterpret_cast<const double*>(res + b);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      o.v[k] = __ldcg(src + k);
      o.i[k] = __ldcg(reinterpret_cast<const long long*>(src + 4) + k);
    }
    top4_merge(t, o);
  }
  return top4_block_reduce(t, scratch);
}

// The float64 phases after R1 of a certified decision, shared by `decide`
// and the batched acceptance (kcenter_batched.cu). R1 has left each band
// member's float64 distance to its assigned center in band_val and the
// members that need a full minimum in band_flag (band_any[t & 1] of them).
// R2 (rare): those members get a float64 minimum over every center;
// (flagged member, center) pairs spread over the grid. Only flagged members
// are walked: with massive ties a band can hold most of the points while a
// handful need the full minimum. R3: the largest float64 value; values
// within float64's error of it are ties, and the lowest row wins.
// band_row(j) is the row of band member j. Every block calls this and gets
// the same winner and squared radius.
template <typename Acc, typename BandRow>
__device__ inline long long band_winner(const KcParams<Acc>& p, cg::grid_group& grid, long long t,
                                        long long count, BandRow band_row, double* radius2,
                                        long long* exact_evals) {
  __shared__ double s_red_v[kThreads / 32];
  __shared__ long long s_red_i[kThreads / 32];
  __shared__ int s_flag;
  const int slot = static_cast<int>(t & 1);
  const int lane = threadIdx.x & 31;
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  if (threadIdx.x == 0) s_flag = __ldcg(p.band_any + slot);
  __syncthreads();
  if (s_flag) {
    const long long K = p.n_sel + t;  // centers so far
    const long long flagged = s_flag;
    for (long long pair = gwarp; pair < flagged * K; pair += nwarps) {
      const long long f = pair / K, k = pair - f * K;
      const long long j = __ldcg(p.band_flag + f);
      const double d = exact_d2_warp(p, band_row(j), center_row(p.init_rows, p.n_sel, p.picks, k));
      if (lane == 0) atomicMin(p.band_val + j, static_cast<unsigned long long>(__double_as_longlong(d)));
    }
    *exact_evals += flagged * K;
    grid.sync();
  }
  double mx = -1.0;
  for (long long j = threadIdx.x; j < count; j += blockDim.x)
    mx = fmax(mx, __longlong_as_double(static_cast<long long>(__ldcg(p.band_val + j))));
  for (int off = 16; off > 0; off >>= 1) mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  if (lane == 0) s_red_v[threadIdx.x >> 5] = mx;
  __syncthreads();
  mx = -1.0;
  for (int w = 0; w < (blockDim.x >> 5); ++w) mx = fmax(mx, s_red_v[w]);
  __syncthreads();
  const double cut = mx - p.tie.E(mx);
  long long best = 0x7fffffffffffffffLL;
  for (long long j = threadIdx.x; j < count; j += blockDim.x) {
    const double v = __longlong_as_double(static_cast<long long>(__ldcg(p.band_val + j)));
    const long long y = band_row(j);
    if (v >= cut && y < best) best = y;
  }
  for (int off = 16; off > 0; off >>= 1) {
    const long long o = __shfl_xor_sync(0xffffffffu, best, off);
    best = o < best ? o : best;
  }
  if (lane == 0) s_red_i[threadIdx.x >> 5] = best;
  __syncthreads();
  best = 0x7fffffffffffffffLL;
  for (int w = 0; w < (blockDim.x >> 5); ++w) best = s_red_i[w] < best ? s_red_i[w] : best;
  __syncthreads();
  *radius2 = mx;
  return best;
}

// Decide pick t from the global candidates (every block, identically).
// Returns the winner and its squared radius. Uses grid-wide phases only when
// the step is ambiguous (then every block takes the same branches, so every
// block meets the same grid.sync calls).
template <typename Acc>
__device__ inline long long decide(const KcParams<Acc>& p, cg::grid_group& grid, long long t,
                                   const Top4& g, double second, double* radius2,
                                   long long* ambiguous, long long* exact_evals) {
  const double M = g.v[0];
  const double thr = M - 2.0 * p.err.E(M);  // err: the band model (svp/exactness.h)
  int nb = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) nb += (g.v[k] >= 0.0 && g.v[k] >= thr) ? 1 : 0;
  if (nb <= 1) {
    *radius2 = M;
    return g.i[0];
  }
  // ambiguous: float64 decides among the band [thr, M]
  ++*ambiguous;
  const int slot = static_cast<int>(t & 1);
  long long count;
  // the band may hold more than the candidates known: collect it
  const bool collect = nb == 4 || second >= thr;
  if (collect) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long q = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; q < p.N;
         q += stride) {
      const double v = static_cast<double>(__ldcg(p.m + q));
      if (v >= 0.0 && v >= thr) {
        const int j = atomicAdd(p.band_count + slot, 1);
        p.band_idx[j] = row_of(p, q);
      }
    }
    grid.sync();
    count = __ldcg(p.band_count + slot);
  } else {
    count = nb;
  }
  const int lane = threadIdx.x & 31;
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  // R1: each member's float64 distance to the center that gave its value
  for (long long j = gwarp; j < count; j += nwarps) {
    const long long y = collect ? __ldcg(p.band_idx + j) : g.i[j];
    const long long qy = pos_of(p, y);
    const long long a = __ldcg(p.assign + qy);
    const long long c = center_row(p.init_rows, p.n_sel, p.picks, a);  // picks read via __ldcg
    const double u = exact_d2_warp(p, y, c);
    if (lane == 0) {
      const double mm = static_cast<double>(__ldcg(p.m + qy));
      double mm2 = static_cast<double>(__ldcg(p.m2 + qy));
      if (p.n_cells) mm2 = fmin(mm2, __ldcg(p.m2floor + p.cellpos[qy]));
      const bool certain = u == 0.0 || mm2 - mm > 2.0 * p.err.E(mm2);
      p.band_val[j] = __double_as_longlong(u);
      // the members that need a full minimum, compacted: band_flag[f] is the
      // f-th such member's slot in the band, band_any[slot] their count
      if (!certain) p.band_flag[atomicAdd(p.band_any + slot, 1)] = static_cast<int>(j);
    }
  }
  *exact_evals += count;
  grid.sync();
  return band_winner(p, grid, t, count,
                     [&](long long j) { return collect ? __ldcg(p.band_idx + j) : g.i[j]; },
                     radius2, exact_evals);
}

// The float64 sum of squares of a row, in the one order every CUDA path uses
// for a row's norm (kc_facts for the rows of X, the shard for a row received
// from another rank): lane l adds elements l, l + 32, ... by FMA, then a
// butterfly over the warp. One order, so that a row's norm, and with it every
// float64 cosine distance, is the same bits wherever it is computed. Every
// lane of the warp must call it; every lane gets the sum.
__device__ inline double warp_row_sumsq64(DType dtype, const char* row, long long D) {
  const int lane = threadIdx.x & 31;
  double ss = 0.0;
  for (long long j = lane; j < D; j += 32) {
    const double v = elem_as_double(dtype, row, j);
    ss = fma(v, v, ss);
  }
  return warp_sum(ss);
}

// One warp per row: first NaN/Inf, largest magnitude, float64 norms.
// facts: [0] first bad linear index, [1] max |x| (float64 bits), [2] first
// zero-norm row, [3] min norm bits, [4] max norm bits.
template <typename T>
__global__ void kc_facts(const char* X, long long N, long long D, long long row_bytes,
                         double* norm64, unsigned long long* facts) {
  __shared__ unsigned long long s_bad, s_zero, s_max, s_nmin, s_nmax;
  if (threadIdx.x == 0) {
    s_bad = s_zero = ~0ull;
    s_max = s_nmax = 0ull;
    s_nmin = 0x7ff0000000000000ull;  // +inf bits
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long r = warp; r < N; r += nwarps) {
    const char* row = X + r * row_bytes;
    unsigned long long bad = ~0ull;
    double mx = 0.0;
    for (long long j = lane; j < D; j += 32) {
      const double v = static_cast<double>(Elem<T>::get(row, j));
      if (!isfinite(v)) {
        const unsigned long long lin = static_cast<unsigned long long>(r * D + j);
        bad = lin < bad ? lin : bad;
      } else {
        mx = fmax(mx, fabs(v));
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const unsigned long long ob = __shfl_xor_sync(0xffffffffu, bad, off);
      bad = ob < bad ? ob : bad;
      mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    }
    // a second read of the row (from L1): the norm in the shared order
    const double ss = warp_row_sumsq64(Elem<T>::dtype, row, D);
    if (lane == 0) {  // shared-memory atomics; one global atomic per block below
      if (bad != ~0ull) {
        atomicMin(&s_bad, bad);
        continue;
      }
      atomicMax(&s_max, static_cast<unsigned long long>(__double_as_longlong(mx)));
      const double nrm = sqrt(ss);
      if (norm64) norm64[r] = nrm;
      if (nrm == 0.0) atomicMin(&s_zero, static_cast<unsigned long long>(r));
      atomicMin(&s_nmin, static_cast<unsigned long long>(__double_as_longlong(nrm)));
      atomicMax(&s_nmax, static_cast<unsigned long long>(__double_as_longlong(nrm)));
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    if (s_bad != ~0ull) atomicMin(facts + 0, s_bad);
    atomicMax(facts + 1, s_max);
    if (s_zero != ~0ull) atomicMin(facts + 2, s_zero);
    atomicMin(facts + 3, s_nmin);
    atomicMax(facts + 4, s_nmax);
  }
}

template <typename Acc>
__global__ void kc_prepare(KcParams<Acc> p, const long long* excluded, long long n_excluded) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long r = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; r < p.N; r += stride) {
    p.m[r] = Acc(INFINITY);
    p.m2[r] = Acc(INFINITY);
    p.assign[r] = -1;
    if (p.norm64) const_cast<Acc*>(p.scale)[r] = static_cast<Acc>(1.0 / p.norm64[r]);
  }
  // the single-process driver's band counters (a shard has none: null there)
  if (blockIdx.x == 0 && threadIdx.x == 0 && p.band_count) {
    p.band_count[0] = p.band_count[1] = 0;
    p.band_any[0] = p.band_any[1] = 0;
  }
  (void)excluded;
  (void)n_excluded;
}

// How rows are read: G lanes per row, 16-byte vector loads when every row is
// 16-byte aligned, and how many chunks a lane loads per iteration.
struct Geometry {
  int G = 32;     // lanes per row
  int cpl = 1;    // chunks per lane per iteration (1, 2, 4, 8)
  bool vec = false;
};

inline int pow2_at_least(long long v) {
  int p = 1;
  while (p < v && p < 32) p <<= 1;
  return p;
}

inline Geometry geometry(const DeviceMatrix& X, bool f64acc) {
  Geometry g;
  const long long es = static_cast<long long>(dtype_size(X.dtype));
  const long long row_bytes = X.row_stride * es;
  const auto base = reinterpret_cast<std::uintptr_t>(X.data);
  g.vec = !f64acc && X.dtype != DType::f64 && base % 16 == 0 && row_bytes % 16 == 0 &&
          X.cols * es >= 16;
  if (g.vec) {
    const long long E = 16 / es;
    const long long chunks = X.cols / E;
    g.G = pow2_at_least(chunks);
    const long long per_lane = (chunks + g.G - 1) / g.G;
    g.cpl = per_lane >= 8 ? 8 : per_lane >= 4 ? 4 : per_lane >= 2 ? 2 : 1;
  } else {
    g.G = pow2_at_least(X.cols);
  }
  return g;
}

// Record pick t (block 0, thread 0) and keep the radii non-increasing.
template <typename Acc>
__device__ inline void commit(const KcParams<Acc>& p, long long t, long long winner,
                              double radius2, double* prev_radius) {
  const double r2 = fmin(*prev_radius, fmax(radius2, 0.0));
  *prev_radius = r2;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    p.picks[t] = winner;
    if (p.radii) p.radii[t] = p.metric == Metric::cosine ? 0.5 * r2 : sqrt(r2);
    p.band_count[(t + 1) & 1] = 0;  // next step's counters (not in use this step)
    p.band_any[(t + 1) & 1] = 0;
  }
}

}  // namespace cuda
}  // namespace svp
