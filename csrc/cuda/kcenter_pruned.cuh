// The pruned method on the GPU: cells built on the device, and per step three
// grid-wide phases inside the persistent kernel (no host synchronisation):
//   P1  one warp per cell: float64 distance of the new center to the centroid,
//       triangle-inequality tests, and the member range [qa, qb) that can
//       change (binary search on members sorted by distance to the centroid);
//       surviving cells are appended to an active list (atomic compaction);
//   P2  one warp per active cell: the point-level bound, then the fused
//       distance and min update of the members that remain; the cell's best
//       two live members are recomputed;
//   P3  block candidates from every cell's best two (as the scan's).
// The bounds are those of csrc/cpu/pruned_engine.h, in float64 with a relative
// margin, so every skip is provably safe and the picks are the scan's.
#pragma once

#include "kcenter_steps.cuh"

namespace svp {
namespace cuda {

constexpr double kPruneRel = 1e-10;  // margin on float64 bounds (see pruned_engine.cpp)

// ------------------------------------------------------------- set-up --

static __global__ void pr_hist(const long long* cell_of, long long N, long long n_cells,
                        unsigned long long* counts, int* bad) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < N; i += stride) {
    const long long c = cell_of[i];
    if (c < 0 || c >= n_cells) {
      atomicExch(bad, 1);
      continue;
    }
    atomicAdd(counts + c, 1ull);
  }
}

static __global__ void pr_scatter(const long long* cell_of, long long N, const long long* lo,
                           unsigned long long* fill, long long* perm) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < N; i += stride) {
    const long long c = cell_of[i];
    const unsigned long long k = atomicAdd(fill + c, 1ull);
    perm[lo[c] + static_cast<long long>(k)] = i;
  }
}

// One block per cell: cell ids of its positions, and its centroid (float64
// mean of the members in the working space, stored as float32: the centroid
// is only a reference point, every bound uses it exactly as stored).
template <typename Acc>
__global__ void pr_cells(KcParams<Acc> p, const long long* perm, int* cellpos, float* centroid) {
  const long long k = blockIdx.x;
  const long long a = p.lo[k], b = p.lo[k + 1];
  for (long long q = a + threadIdx.x; q < b; q += blockDim.x) cellpos[q] = static_cast<int>(k);
  if (a == b) return;
  for (long long j = threadIdx.x; j < p.D; j += blockDim.x) {
    double s = 0.0;
    for (long long q = a; q < b; ++q) {
      const long long r = perm[q];
      double v = elem_as_double(p.dtype, p.X + r * p.row_bytes, j);
      if (p.norm64) v /= p.norm64[r];
      s += v;
    }
    centroid[k * p.D + j] = static_cast<float>(s / static_cast<double>(b - a));
  }
}

// One warp per position: p = ||x - mu|| in float64.
template <typename Acc>
__global__ void pr_point_dist(KcParams<Acc> p, const long long* perm, const int* cellpos,
                              const float* centroid, double* pdist) {
  const int lane = threadIdx.x & 31;
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long q = warp; q < p.N; q += nwarps) {
    const long long r = perm[q];
    const char* row = p.X + r * p.row_bytes;
    const float* mu = centroid + static_cast<long long>(cellpos[q]) * p.D;
    const double nrm = p.norm64 ? p.norm64[r] : 1.0;
    double acc = 0.0;
    for (long long j = lane; j < p.D; j += 32) {
      double v = elem_as_double(p.dtype, row, j);
      if (p.norm64) v /= nrm;
      const double d = v - static_cast<double>(mu[j]);
      acc = fma(d, d, acc);
    }
    acc = warp_sum(acc);
    if (lane == 0) pdist[q] = sqrt(acc);
  }
}

template <typename Acc>
__global__ void pr_finish(KcParams<Acc> p, long long* where, double* radius, double* m2floor) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long t0 = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  for (long long q = t0; q < p.N; q += stride) where[p.perm[q]] = q;
  for (long long k = t0; k < p.n_cells; k += stride) {
    const long long a = p.lo[k], b = p.lo[k + 1];
    radius[k] = a < b ? p.p[b - 1] : 0.0;
    m2floor[k] = INFINITY;
  }
}

// Best two live members of cell k (warp-wide; lane 0 returns them).
template <typename Acc>
__device__ inline Top2 cell_top2(const KcParams<Acc>& p, long long k) {
  const int lane = threadIdx.x & 31;
  Top2 t;
  top2_clear(t);
  for (long long q = p.lo[k] + lane; q < p.lo[k + 1]; q += 32) {
    const double v = static_cast<double>(__ldcg(p.m + q));
    if (v >= 0.0) top2_push(t, v, p.perm[q]);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const double ov1 = __shfl_xor_sync(0xffffffffu, t.v1, off);
    const double ov2 = __shfl_xor_sync(0xffffffffu, t.v2, off);
    const long long oi1 = __shfl_xor_sync(0xffffffffu, t.i1, off);
    const long long oi2 = __shfl_xor_sync(0xffffffffu, t.i2, off);
    top2_push(t, ov1, oi1);
    top2_push(t, ov2, oi2);
  }
  return t;
}

template <typename Acc>
__global__ void pr_ctop_all(KcParams<Acc> p) {
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long k = warp; k < p.n_cells; k += nwarps) {
    const Top2 t = cell_top2(p, k);
    if ((threadIdx.x & 31) == 0) p.ctop[k] = t;
  }
}

// Block candidates from the cells' best two (threads over cells).
template <typename Acc>
__device__ inline void cell_candidates(const KcParams<Acc>& p, Top4* res, double* second,
                                       Top4* scratch) {
  Top2 mine;
  top2_clear(mine);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long k = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; k < p.n_cells;
       k += stride) {
    const double* src = reinterpret_cast<const double*>(p.ctop + k);
    const double v1 = __ldcg(src), v2 = __ldcg(src + 1);
    const long long i1 = __ldcg(reinterpret_cast<const long long*>(src + 2));
    const long long i2 = __ldcg(reinterpret_cast<const long long*>(src + 3));
    top2_push(mine, v1, i1);
    top2_push(mine, v2, i2);
  }
  write_block_candidates(mine, res, second, scratch);
}

// Hand-over to the scan: per-point state from cell order back to row order
// (m2 takes the cell floors), into the given row-ordered arrays.
template <typename Acc>
__global__ void pr_to_rows(KcParams<Acc> p, Acc* m_rows, Acc* m2_rows, long long* assign_rows) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long q = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; q < p.N; q += stride) {
    const long long r = p.perm[q];
    m_rows[r] = p.m[q];
    const double fl = p.m2floor[p.cellpos[q]];
    const Acc floor_acc = fl < 1e308 ? static_cast<Acc>(fl * (1.0 - 1e-6)) : Acc(INFINITY);
    m2_rows[r] = p.m2[q] < floor_acc ? p.m2[q] : floor_acc;
    assign_rows[r] = p.assign[q];
  }
}

// ---------------------------------------------------------- per step --

// P1: which cells can change under the new center (float64 center c64 in
// shared memory, center row w in cell cw). Appends them to the active list.
template <typename Acc>
__device__ inline void prune_cells(const KcParams<Acc>& p, const double* c64, long long cw, int par) {
  const int lane = threadIdx.x & 31;
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long k = gwarp; k < p.n_cells; k += nwarps) {
    const double* src = reinterpret_cast<const double*>(p.ctop + k);
    const double cmax = __ldcg(src);
    const long long i1 = __ldcg(reinterpret_cast<const long long*>(src + 2));
    const bool force = k == cw;  // the center's own cell: its top must be refreshed
    if (i1 == 0x7fffffffffffffffLL && !force) continue;  // no live member
    const float* mu = p.centroid + k * p.D;
    double acc = 0.0;
    for (long long j = lane; j < p.D; j += 32) {
      const double d = c64[j] - static_cast<double>(mu[j]);
      acc = fma(d, d, acc);
    }
    const double dc = sqrt(warp_sum(acc));
    const double r = p.radius[k];
    const double lb = dc * (1.0 - kPruneRel) - r * (1.0 + kPruneRel);
    const long long a = p.lo[k], b = p.lo[k + 1];
    if (!force && lb > 0.0 && lb * lb >= cmax) {
      if (lane == 0) p.m2floor[k] = fmin(__ldcg(p.m2floor + k), lb * lb);
      continue;
    }
    long long qa = a, qb = b;
    if (cmax < 1e308 && cmax >= 0.0) {
      // members with p outside [dc - R - slack, dc + R + slack] are at least
      // R = sqrt(cmax) from the center
      const double R = sqrt(cmax);
      const double slack = 1e-9 * (dc + R + r);
      const double lo_v = dc - R - slack, hi_v = dc + R + slack;
      long long x = a, y = b;  // lower_bound(lo_v)
      while (x < y) {
        const long long mid = (x + y) >> 1;
        if (p.p[mid] < lo_v) x = mid + 1; else y = mid;
      }
      qa = x;
      y = b;  // upper_bound(hi_v), from qa
      while (x < y) {
        const long long mid = (x + y) >> 1;
        if (p.p[mid] <= hi_v) x = mid + 1; else y = mid;
      }
      qb = x;
      if ((qa > a || qb < b) && lane == 0) p.m2floor[k] = fmin(__ldcg(p.m2floor + k), cmax);
    }
    if ((qa < qb || force) && lane == 0) {
      // the cell (its best two are recomputed after the scan) and its members
      // in slabs of kSlab, so that a large cell is shared by many warps
      const int j = atomicAdd(p.n_active + par, 1);
      p.active[j] = static_cast<int>(k);
      atomicAdd(reinterpret_cast<unsigned long long*>(&p.state->scanned),
                static_cast<unsigned long long>(qb - qa));
      const long long ns = (qb - qa + kSlab - 1) / kSlab;
      if (ns > 0) {
        const long long s0 = atomicAdd(p.n_slabs + par, static_cast<int>(ns));
        for (long long u = 0; u < ns; ++u) {
          p.slab_cell[s0 + u] = static_cast<int>(k);
          p.slab_range[2 * (s0 + u)] = qa + u * kSlab;
          p.slab_range[2 * (s0 + u) + 1] = min(qb, qa + (u + 1) * kSlab);
          p.slab_dc[s0 + u] = dc;
        }
      }
    }
  }
}

// P2: scan the members that can change, one warp per slab.
template <typename T, typename Acc, int CPL, bool VEC>
__device__ inline void scan_slabs(const KcParams<Acc>& p, const Acc* cs, long long ordinal, int par,
                                  long long& evals) {
  const int lane = threadIdx.x & 31;
  const int G = p.G;
  const int l = lane & (G - 1);
  const int slot = lane / G;
  const int rpw = 32 / G;
  const unsigned mask = G == 32 ? 0xffffffffu : (((1u << G) - 1u) << (slot * G));
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  const int ns = __ldcg(p.n_slabs + par);
  for (long long j = gwarp; j < ns; j += nwarps) {
    const long long qa = __ldcg(p.slab_range + 2 * j), qb = __ldcg(p.slab_range + 2 * j + 1);
    const double dc = __ldcg(p.slab_dc + j);
    for (long long qbase = qa; qbase < qb; qbase += rpw) {
      const long long q = qbase + slot;
      if (q >= qb) continue;
      const Acc mq = __ldcg(p.m + q);
      if (mq < Acc(0)) continue;
      const double pq = p.p[q];
      const double lbx = fabs(dc - pq) - kPruneRel * (dc + pq);
      if (lbx > 0.0 && lbx * lbx >= static_cast<double>(mq)) {
        if (l == 0) {  // a lower bound for the second-nearest center: never round up
          const Acc lb2 = static_cast<Acc>(lbx * lbx * (1.0 - 1e-6));
          if (lb2 < __ldcg(p.m2 + q)) p.m2[q] = lb2;
        }
        continue;
      }
      const long long r = p.perm[q];
      const Acc s = p.scale ? p.scale[r] : Acc(1);
      const Acc d = row_dist<T, Acc, CPL, VEC>(p.X + r * p.row_bytes, p.D, G, l, mask, s, cs);
      if (l == 0) {
        ++evals;
        const Acc m2q = __ldcg(p.m2 + q);
        if (d < mq) {
          p.m2[q] = mq;
          p.m[q] = d;
          p.assign[q] = ordinal;
        } else if (d < m2q) {
          p.m2[q] = d;
        }
      }
    }
  }
}

// P3a: the best two of every cell that may have changed (one warp per cell).
template <typename Acc>
__device__ inline void refresh_active_tops(const KcParams<Acc>& p, int par) {
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  const int na = __ldcg(p.n_active + par);
  for (long long j = gwarp; j < na; j += nwarps) {
    const long long k = __ldcg(p.active + j);
    const Top2 t = cell_top2(p, k);
    if ((threadIdx.x & 31) == 0) p.ctop[k] = t;
  }
}

template <typename T, typename Acc, int CPL, bool VEC>
__global__ void __launch_bounds__(kThreads) kc_steps_pruned(KcParams<Acc> p, long long t_begin,
                                                            long long t_end) {
  SVP_DYNAMIC_SHARED(unsigned char, smem_raw);
  Acc* cs = reinterpret_cast<Acc*>(smem_raw);
  double* c64 = reinterpret_cast<double*>(smem_raw + ((p.D * sizeof(Acc) + 15) / 16) * 16);
  __shared__ Top4 scratch[kThreads / 32];
  cg::grid_group grid = cg::this_grid();
  double prev = p.state->prev_radius;
  long long amb = 0, exact = 0, evals = 0;
  for (long long t = t_begin; t < t_end; ++t) {
    const Top4 g = global_top4(p.blockres + (t & 1) * p.max_blocks, gridDim.x, scratch);
    const double second = global_second(p.blocksecond + (t & 1) * p.max_blocks, gridDim.x);
    double r2 = 0;
    const long long w = decide(p, grid, t, g, second, &r2, &amb, &exact);
    commit(p, t, w, r2, &prev);
    if (t + 1 >= p.budget) break;
    const int par = static_cast<int>(t & 1);
    const long long qw = pos_of(p, w);
    if (blockIdx.x == 0 && threadIdx.x == 0) {
      p.m[qw] = Acc(-1);        // the new center leaves the candidates
      p.n_active[par ^ 1] = 0;  // next step's lists (unused this step)
      p.n_slabs[par ^ 1] = 0;
    }
    __syncthreads();
    {
      const char* row = p.X + w * p.row_bytes;
      const double nrm = p.norm64 ? p.norm64[w] : 1.0;
      for (long long j = threadIdx.x; j < p.D; j += blockDim.x) {
        double v = elem_as_double(p.dtype, row, j);
        if (p.norm64) v /= nrm;
        c64[j] = v;
        cs[j] = static_cast<Acc>(v);
      }
    }
    __syncthreads();
    prune_cells(p, c64, p.cellpos[qw], par);
    grid.sync();
    scan_slabs<T, Acc, CPL, VEC>(p, cs, p.n_sel + t, par, evals);
    grid.sync();
    refresh_active_tops(p, par);
    grid.sync();
    cell_candidates(p, p.blockres + ((t + 1) & 1) * p.max_blocks,
                    p.blocksecond + ((t + 1) & 1) * p.max_blocks, scratch);
    grid.sync();
  }
  unsigned long long e = static_cast<unsigned long long>(evals);
  for (int off = 16; off > 0; off >>= 1) e += __shfl_xor_sync(0xffffffffu, e, off);
  if ((threadIdx.x & 31) == 0 && e)
    atomicAdd(reinterpret_cast<unsigned long long*>(&p.state->distance_evals), e);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    p.state->t = t_end;
    p.state->prev_radius = prev;
    p.state->ambiguous_steps += amb;
    p.state->exact_evals += exact;
  }
}

}  // namespace cuda
}  // namespace svp
