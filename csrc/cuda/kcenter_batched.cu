// The dtype-independent parts of a batched CUDA k-center pass (see
// kcenter_batched.cuh): the candidates' sort and the certified acceptance.
//
// Acceptance, the rule of the CPU's batched driver (csrc/cpu/kcenter.cpp) on
// the device. The candidates are the nc best live rows, best first, values
// current against every center applied; B is the value of the best row left
// out (or none). Repeatedly: M, the best remaining candidate's value updated
// against this pass's picks, and thr = M - 2E(M) (the band model). If B >= thr
// a point outside the candidates may lie in the band: the pass ends (its
// first pick, if it has none yet, is then a plain step over every point,
// `decide` of kcenter_steps.cuh). Otherwise the pick is the best candidate, or
// float64 decides among the candidates in the band, exactly as `decide` does
// among a band; then the remaining candidates are updated from the T x T
// block. Every block keeps its own copy of the candidates in shared memory and
// computes the same decisions from the same data, so the common path needs no
// grid-wide barrier; only float64 near-ties spread their work over the grid.
#include <algorithm>

#include <cub/device/device_radix_sort.cuh>

#include "kcenter_layout.cuh"
#include "kcenter_steps.cuh"

namespace svp {
namespace cuda {
namespace detail {

namespace {

__global__ void kb_iota(int* rows, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n; i += stride)
    rows[i] = static_cast<int>(i);
}

// Shared memory of the acceptance: the block's copy of the candidates.
template <typename Acc>
struct CandSmem {
  long long* row;
  long long* assign;
  Acc* v;
  Acc* m2;
  int* gone;
  int* member;  // slots of the band's members (ambiguous steps)
  static size_t bytes(int nc) {
    return static_cast<size_t>(nc) * (2 * sizeof(long long) + 2 * sizeof(Acc) + 2 * sizeof(int)) + 64;
  }
  __device__ static CandSmem carve(unsigned char* base, int nc) {
    CandSmem c;
    c.row = reinterpret_cast<long long*>(base);
    c.assign = c.row + nc;
    c.v = reinterpret_cast<Acc*>(c.assign + nc);
    c.m2 = c.v + nc;
    c.gone = reinterpret_cast<int*>(c.m2 + nc);
    c.member = c.gone + nc;
    return c;
  }
};

// float64 decision among the candidates in the band [thr, M] (several of
// them): the same three phases as `decide` (kcenter_steps.cuh), with the
// members taken from the block's candidate copy instead of the grid's rows.
// Every block calls it and gets the same winner.
template <typename Acc>
__device__ long long decide_candidates(const KcParams<Acc>& p, cg::grid_group& grid, long long t,
                                       const CandSmem<Acc>& c, int nc, double thr, double* radius2,
                                       long long* ambiguous, long long* exact_evals) {
  __shared__ int s_nm;
  ++*ambiguous;
  // the pass's earlier picks (written by block 0) are read as centers below
  grid.sync();
  if (threadIdx.x == 0) {  // the members, in slot order (the same list in every block)
    int nm = 0;
    for (int j = 0; j < nc; ++j)
      if (!c.gone[j] && static_cast<double>(c.v[j]) >= thr) c.member[nm++] = j;
    s_nm = nm;
  }
  __syncthreads();
  const int nm = s_nm;
  const int slot = static_cast<int>(t & 1);
  const int lane = threadIdx.x & 31;
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  // R1: each member's float64 distance to the center that gave its value
  for (long long jm = gwarp; jm < nm; jm += nwarps) {
    const int j = c.member[jm];
    const long long y = c.row[j];
    const long long ctr = center_row(p.init_rows, p.n_sel, p.picks, c.assign[j]);
    const double u = exact_d2_warp(p, y, ctr);
    if (lane == 0) {
      const double mm = static_cast<double>(c.v[j]), mm2 = static_cast<double>(c.m2[j]);
      const bool certain = u == 0.0 || mm2 - mm > 2.0 * p.err.E(mm2);
      p.band_val[jm] = __double_as_longlong(u);
      if (!certain) p.band_flag[atomicAdd(p.band_any + slot, 1)] = static_cast<int>(jm);
    }
  }
  *exact_evals += nm;
  grid.sync();
  // R2 and R3, as `decide` takes them
  return band_winner(p, grid, t, nm, [&](long long jm) { return c.row[c.member[jm]]; }, radius2,
                     exact_evals);
}

template <typename Acc>
__global__ void __launch_bounds__(kThreads) kb_accept(KcParams<Acc> p, const Acc* keys,
                                                      const int* rows, int nc, long long live,
                                                      const Acc* dmat, int ld, long long t_cap) {
  SVP_DYNAMIC_SHARED(unsigned char, smem_raw);
  __shared__ Top4 scratch[kThreads / 32];
  __shared__ int s_slot;
  cg::grid_group grid = cg::this_grid();
  const CandSmem<Acc> c = CandSmem<Acc>::carve(smem_raw, nc);
  for (int j = threadIdx.x; j < nc; j += blockDim.x) {
    const long long r = rows[j];
    c.row[j] = r;
    c.v[j] = keys[j];
    c.m2[j] = __ldcg(p.m2 + r);
    c.assign[j] = __ldcg(p.assign + r);
    c.gone[j] = 0;
  }
  // every block has read the run state before block 0 may rewrite it at the end
  grid.sync();
  // the bound on every point outside the candidates: the best one left out
  const double B = live > nc ? static_cast<double>(keys[nc]) : -1.0;
  double prev = p.state->prev_radius;
  long long t = p.state->t;
  const long long t_begin = t;
  long long amb = 0, exact = 0, plain = 0;
  while (t < t_cap) {
    Top4 mine;
    top4_clear(mine);
    for (int j = threadIdx.x; j < nc; j += blockDim.x)
      if (!c.gone[j]) top4_push(mine, static_cast<double>(c.v[j]), c.row[j]);
    const Top4 g = top4_block_reduce(mine, scratch);
    if (g.v[0] < 0.0) break;  // every candidate picked: the next pass takes new ones
    const double M = g.v[0];
    const double thr = M - 2.0 * p.err.E(M);
    if (B >= 0.0 && B >= thr) {
      // a point outside the candidates may be in the band
      if (t > t_begin) break;
      // not even the first pick is certified: a plain step over every point,
      // from the global top 4 and the fifth value (all values are current:
      // nothing was picked in this pass yet), exactly as the scan decides
      Top4 top;
      top4_clear(top);
      for (int k = 0; k < 4 && k < live; ++k) {
        top.v[k] = static_cast<double>(keys[k]);
        top.i[k] = rows[k];
      }
      const double fifth = live > 4 ? static_cast<double>(keys[4]) : -2.0;
      double r2 = 0;
      const long long w = decide(p, grid, t, top, fifth, &r2, &amb, &exact);
      commit(p, t, w, r2, &prev);
      ++t;
      ++plain;
      break;
    }
    long long w = g.i[0];
    double r2 = M;
    if (g.v[1] >= 0.0 && g.v[1] >= thr)
      w = decide_candidates(p, grid, t, c, nc, thr, &r2, &amb, &exact);
    commit(p, t, w, r2, &prev);
    ++t;
    if (threadIdx.x == 0) s_slot = -1;
    __syncthreads();
    for (int j = threadIdx.x; j < nc; j += blockDim.x)
      if (c.row[j] == w) s_slot = j;
    __syncthreads();
    const int jw = s_slot;  // the winner is always a candidate here
    if (threadIdx.x == 0 && jw >= 0) c.gone[jw] = 1;
    __syncthreads();
    if (t >= t_cap || jw < 0) break;
    // the remaining candidates against the new pick (ordinal n_sel + t - 1)
    const long long ord = p.n_sel + t - 1;
    for (int j = threadIdx.x; j < nc; j += blockDim.x) {
      if (c.gone[j]) continue;
      const Acc d = dmat[static_cast<long long>(j) * ld + jw];
      Acc mr = c.v[j], m2v = c.m2[j];
      take_center_distance(d, ord, mr, m2v, c.assign[j]);
      c.v[j] = mr;
      c.m2[j] = m2v;
    }
    __syncthreads();
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    p.state->t = t;
    p.state->prev_radius = prev;
    p.state->pass_picks = t - t_begin;
    p.state->ambiguous_steps += amb;
    p.state->exact_evals += exact;
    p.state->plain_steps += plain;
  }
}

}  // namespace

void batched_init_rows(const Layout& L, long long n, cudaStream_t stream) {
  launch<kb_iota>(1024, 256, 0, stream, L.rows_in, n);
}

size_t batched_sort_bytes(long long n) {
  size_t bf = 0, bd = 0;
  SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, bf, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), static_cast<int>(n)));
  SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, bd, static_cast<const double*>(nullptr), static_cast<double*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), static_cast<int>(n)));
  return std::max(bf, bd);
}

template <typename Acc>
void batched_sort(const KcParams<Acc>& p, const Layout& L, cudaStream_t stream) {
  static_assert(sizeof(Acc) == 4 || sizeof(Acc) == 8, "float or double keys");
  const long long n = p.N;
  size_t bytes = L.bsort_bytes;
  SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(
      L.bsort_temp, bytes, static_cast<const Acc*>(p.m), static_cast<Acc*>(L.keys_out), L.rows_in,
      L.rows_out, static_cast<int>(n), 0, static_cast<int>(8 * sizeof(Acc)), stream));
}

template <typename Acc>
int batched_accept_grid(const KernelFit& fit, int nc, int max_blocks) {
  const size_t smem = CandSmem<Acc>::bytes(nc);
  fit.allow<kb_accept<Acc>>(smem, "batched acceptance");
  const int per_sm = fit.blocks_per_sm<kb_accept<Acc>>(kThreads,
                                       smem, "batched acceptance");
  // one block per SM: every block repeats the common path, more would only
  // add copies; the float64 phases still spread over every SM
  return std::max(1, std::min({max_blocks, fit.sms, per_sm * fit.sms}));
}

template <typename Acc>
void batched_accept(const KcParams<Acc>& p, const Layout& L, int nc, long long live, long long t_cap,
                    int grid, cudaStream_t stream) {
  const Acc* keys = static_cast<const Acc*>(L.keys_out);
  const int* rows = L.rows_out;
  const Acc* dmat = static_cast<const Acc*>(L.dmat);
  int ld = static_cast<int>(L.batch_T);
  launch_cooperative<kb_accept<Acc>>(grid, kThreads, CandSmem<Acc>::bytes(nc), stream, p, keys, rows, nc,
                                     live, dmat, ld, t_cap);
}

template void batched_sort<float>(const KcParams<float>&, const Layout&, cudaStream_t);
template void batched_sort<double>(const KcParams<double>&, const Layout&, cudaStream_t);
template int batched_accept_grid<float>(const KernelFit&, int, int);
template int batched_accept_grid<double>(const KernelFit&, int, int);
template void batched_accept<float>(const KcParams<float>&, const Layout&, int, long long, long long,
                                    int, cudaStream_t);
template void batched_accept<double>(const KcParams<double>&, const Layout&, int, long long,
                                     long long, int, cudaStream_t);

}  // namespace detail
}  // namespace cuda
}  // namespace svp
