// CUDA k-center inside many sets in one launch (svp/grouped_cuda.h).
//
// A *team* of threads runs one set from its first pick to its last, with the
// certified decision of csrc/cpu/kcenter.cpp at every step. Teams come in
// three sizes, chosen per set from its share of the work:
//   - a warp (small sets): warps take sets from a queue one after another,
//     each with its own copy of the current center in shared memory, and
//     never wait for the rest of their block;
//   - a block (medium sets): blocks take sets from a queue;
//   - several blocks (large sets, or a set with more than two blocks' share):
//     the first blocks of the grid, fixed at launch, meet at a barrier of
//     their own once a step (a counter and a generation in global memory;
//     the launch is cooperative, so every block is resident and the barrier
//     cannot wait on a block that never runs).
// Each step a team reduces its threads' two best candidates to its top 4 and
// the largest second-best, decides the pick (float64 phases only when two
// candidates lie within the error band, as in kcenter_steps.cuh), and applies
// the new center to the rows it owns. Row distances come from row_dist of
// kcenter_steps.cuh (G lanes per row), so the error model of
// svp/exactness.h holds as it does for the single-set kernels.
//
// The host polls a counter of picks on a second stream while the kernel
// runs (progress, Ctrl-C); a stop flag written the same way ends every team
// within a few dozen steps.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "kcenter_steps.cuh"
#include "launch.cuh"
#include "svp/grouped_cuda.h"

namespace svp {
namespace cuda {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kWarps = kThreads / 32;
// A warp runs a set of at most this many rows (and rows of at most
// kWarpMaxCols values): a step is then at most a few dozen row passes.
constexpr long long kWarpMaxRows = 2048;
constexpr long long kWarpMaxCols = 64;
// A single block never runs more rows than this: larger sets get several.
constexpr long long kBlockMaxRows = 65536;
// Teams look at the stop flag every this many picks.
constexpr long long kStopEvery = 32;

// Per-set counters of the float64 phases, by step parity.
struct SetCounters {
  int band[2];     // members of the ambiguity band
  int flagged[2];  // of them, members whose nearest center is uncertain
};

template <typename Acc>
struct GkParams {
  KcParams<Acc> x;  // the matrix, metric, row norms (by row of X), error models, G
  const long long* members;   // [M] rows of X, set after set
  const long long* offsets;   // [S + 1]
  const long long* budgets;   // [S]
  const long long* starts;    // [S] positions
  const long long* sel;       // already selected positions, set after set
  const long long* sel_off;   // [S + 1]
  const long long* pick_off;  // [S + 1]
  long long* picks;           // [total] positions (output)
  double* radii;              // [total] or null
  Acc* m;                     // [M]
  Acc* m2;                    // [M]
  long long* assign;          // [M] ordinal of the nearest center within the set
  long long* band_idx;        // [M] band members (positions), in each set's slice
  unsigned long long* band_val;  // [M] their float64 values (bits)
  long long* flagged;         // [M] indices into the band of uncertain members
  SetCounters* counters;      // [S]
  // teams
  int nb_grid;                  // blocks [0, nb_grid) run the multi-block teams
  const int* block_team;        // [nb_grid] team of each of those blocks
  const int* team_set;          // [n_teams] set of each multi-block team
  const int* team_first;        // [n_teams] its first block
  const int* team_blocks;       // [n_teams] its number of blocks
  unsigned* barrier;            // [n_teams][2] arrivals, generation
  Top4* team_res;               // [2][nb_grid] block candidates by step parity
  double* team_second;          // [2][nb_grid]
  int* team_stop;               // [n_teams][2] the stop flag as block 0 saw it
  const int* block_queue;       // [n_block_sets] sets run by one block, largest first
  int n_block_sets;
  const int* warp_queue;        // [n_warp_sets] sets run by one warp
  int n_warp_sets;
  int* heads;                   // [2] next item of each queue
  const volatile int* stop;     // set by the host to end the run early
  unsigned long long* done;     // picks made
  unsigned long long* stats;    // [3] distance evals, ambiguous steps, float64 distances
  long long cstride;            // shared-memory center stride (Acc values)
};

// ---------------------------------------------------------------- teams --

__device__ inline void team_barrier(unsigned* bar, unsigned nblocks) {
  __syncthreads();
  if (threadIdx.x == 0) {
    volatile unsigned* gen = bar + 1;
    const unsigned g = *gen;
    __threadfence();
    if (atomicAdd(bar, 1u) == nblocks - 1) {
      atomicExch(bar, 0u);
      __threadfence();
      atomicAdd(bar + 1, 1u);
    } else {
      while (*gen == g) __nanosleep(32);
    }
    __threadfence();
  }
  __syncthreads();
}

// One warp. "Local" reductions (every member gets the result) are the warp.
struct WarpTeam {
  __device__ int rank() const { return threadIdx.x & 31; }
  __device__ int size() const { return 32; }
  __device__ int warp() const { return 0; }
  __device__ int warps() const { return 1; }
  __device__ int local_rank() const { return threadIdx.x & 31; }
  __device__ int local_size() const { return 32; }
  __device__ bool leader() const { return (threadIdx.x & 31) == 0; }
  __device__ void sync() const { __syncwarp(); }
  __device__ void local_sync() const { __syncwarp(); }
};

// One block.
struct BlockTeam {
  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ int warp() const { return threadIdx.x >> 5; }
  __device__ int warps() const { return blockDim.x >> 5; }
  __device__ int local_rank() const { return threadIdx.x; }
  __device__ int local_size() const { return blockDim.x; }
  __device__ bool leader() const { return threadIdx.x == 0; }
  __device__ void sync() const { __syncthreads(); }
  __device__ void local_sync() const { __syncthreads(); }
};

// Several blocks: block `index` of `blocks`; local reductions are per block
// (every block reaches the same result from the same data).
struct GridTeam {
  int index, blocks, first;
  unsigned* bar;
  __device__ int rank() const { return index * blockDim.x + threadIdx.x; }
  __device__ int size() const { return blocks * blockDim.x; }
  __device__ int warp() const { return (index * blockDim.x + threadIdx.x) >> 5; }
  __device__ int warps() const { return (blocks * blockDim.x) >> 5; }
  __device__ int local_rank() const { return threadIdx.x; }
  __device__ int local_size() const { return blockDim.x; }
  __device__ bool leader() const { return index == 0 && threadIdx.x == 0; }
  __device__ void sync() const { team_barrier(bar, static_cast<unsigned>(blocks)); }
  __device__ void local_sync() const { __syncthreads(); }
};

// Shared scratch of a block (warp teams use their own warp's slots).
struct Scratch {
  Top4 top[kWarps];
  double dbl[kWarps];
  long long ll[kWarps];
  int flag;
};

// Largest of v over the local group (every member gets it).
template <typename Team>
__device__ inline double local_max(const Team& team, double v, Scratch& s) {
  for (int off = 16; off > 0; off >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, off));
  if constexpr (std::is_same<Team, WarpTeam>::value) {
    return v;
  } else {
    if ((threadIdx.x & 31) == 0) s.dbl[threadIdx.x >> 5] = v;
    __syncthreads();
    double r = -2.0;
    for (int w = 0; w < (blockDim.x >> 5); ++w) r = fmax(r, s.dbl[w]);
    __syncthreads();
    return r;
  }
}

template <typename Team>
__device__ inline long long local_min(const Team& team, long long v, Scratch& s) {
  for (int off = 16; off > 0; off >>= 1) {
    const long long o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o < v ? o : v;
  }
  if constexpr (std::is_same<Team, WarpTeam>::value) {
    return v;
  } else {
    if ((threadIdx.x & 31) == 0) s.ll[threadIdx.x >> 5] = v;
    __syncthreads();
    long long r = 0x7fffffffffffffffLL;
    for (int w = 0; w < (blockDim.x >> 5); ++w) r = s.ll[w] < r ? s.ll[w] : r;
    __syncthreads();
    return r;
  }
}

// The team's best four candidates and the largest second-best of a thread,
// from every thread's two best (every member of the team gets them).
template <typename Acc, typename Team>
__device__ inline void team_candidates(const GkParams<Acc>& p, const Team& team, const Top2& mine,
                                       long long t, Scratch& s, Top4* out, double* second) {
  Top4 t4;
  top4_clear(t4);
  top4_push(t4, mine.v1, mine.i1);
  top4_push(t4, mine.v2, mine.i2);
  if constexpr (std::is_same<Team, WarpTeam>::value) {
    top4_warp_reduce(t4);
    double s2 = mine.v2;
    for (int off = 16; off > 0; off >>= 1) s2 = fmax(s2, __shfl_xor_sync(0xffffffffu, s2, off));
    *out = t4;
    *second = s2;
  } else {
    const Top4 b = top4_block_reduce(t4, s.top);
    const double s2 = local_max(team, mine.v2, s);
    if constexpr (std::is_same<Team, BlockTeam>::value) {
      *out = b;
      *second = s2;
    } else {
      // every block of the team publishes its list, then merges all of them
      const int par = static_cast<int>(t & 1);
      const int slot = par * p.nb_grid + team.first + team.index;
      if (threadIdx.x == 0) {
        p.team_res[slot] = b;
        p.team_second[slot] = s2;
      }
      team.sync();
      Top4 all;
      top4_clear(all);
      double sec = -2.0;
      for (int k = 0; k < team.blocks; ++k) {
        const int sl = par * p.nb_grid + team.first + k;
        Top4 o;
        const double* src = reinterpret_cast<const double*>(p.team_res + sl);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          o.v[j] = __ldcg(src + j);
          o.i[j] = __ldcg(reinterpret_cast<const long long*>(src + 4) + j);
        }
        top4_merge(all, o);
        sec = fmax(sec, __ldcg(p.team_second + sl));
      }
      *out = all;
      *second = sec;
    }
  }
}

// ---------------------------------------------------------------- a set --

// Everything a team knows about its set.
struct SetView {
  long long g;       // set index
  long long off, n;  // its members: [off, off + n)
  long long n_sel, sel0, pick0, budget;
};

// Position of the center with this ordinal: already selected first, then
// the picks (written by the team's leader: read past the L1 cache).
template <typename Acc>
__device__ inline long long center_pos(const GkParams<Acc>& p, const SetView& s, long long a) {
  return a < s.n_sel ? p.sel[s.sel0 + a] : __ldcg(p.picks + s.pick0 + (a - s.n_sel));
}

template <typename Acc>
__device__ inline long long row_at(const GkParams<Acc>& p, const SetView& s, long long q) {
  return p.members[s.off + q];
}

// The working-space center of row r into c (the team's threads of one block,
// or one warp, share the copy).
template <typename Acc, typename Team>
__device__ inline void load_center(const GkParams<Acc>& p, const Team&, long long r, Acc* c) {
  const char* row = p.x.X + r * p.x.row_bytes;
  const double nrm = p.x.norm64 ? p.x.norm64[r] : 1.0;
  const int lr = std::is_same<Team, WarpTeam>::value ? (threadIdx.x & 31) : threadIdx.x;
  const int ls = std::is_same<Team, WarpTeam>::value ? 32 : blockDim.x;
  for (long long j = lr; j < p.x.D; j += ls) {
    const double v = elem_as_double(p.x.dtype, row, j);
    c[j] = static_cast<Acc>(p.x.norm64 ? v / nrm : v);
  }
}

// Applies center c (ordinal `ord`) to the rows this thread's row group owns;
// `exclude` (a position, or -1) is marked picked by its owner. Collects the
// thread's two best live values (positions as indices).
template <typename T, typename Acc, typename Team>
__device__ inline void apply_center(const GkParams<Acc>& p, const Team& team, const SetView& s,
                                    const Acc* c, long long ord, long long exclude, Top2& mine,
                                    long long& evals) {
  const int G = p.x.G;
  const int lane = threadIdx.x & 31;
  const int l = lane & (G - 1);
  const int slot = lane / G;
  const unsigned mask = G == 32 ? 0xffffffffu : (((1u << G) - 1u) << (slot * G));
  const long long group = team.rank() / G, groups = team.size() / G;
  top2_clear(mine);
  for (long long q = group; q < s.n; q += groups) {  // a row group moves together
    Acc mr = p.m[s.off + q];
    if (q == exclude) {
      if (l == 0) p.m[s.off + q] = Acc(-1);
      continue;
    }
    if (mr < Acc(0)) continue;
    const long long r = row_at(p, s, q);
    const char* row = p.x.X + r * p.x.row_bytes;
    const Acc sc = p.x.scale ? p.x.scale[r] : Acc(1);
    const Acc d = row_dist<T, Acc, 1, false>(row, p.x.D, G, l, mask, sc, c);
    if (l == 0) {
      if (d < mr) {
        p.m2[s.off + q] = mr;
        p.m[s.off + q] = d;
        p.assign[s.off + q] = ord;
        mr = d;
      } else if (d < p.m2[s.off + q]) {
        p.m2[s.off + q] = d;
      }
      top2_push(mine, static_cast<double>(mr), q);
      ++evals;
    }
  }
}

// g.i[j] for a j known only at run time, without moving g to local memory.
__device__ inline long long top4_index(const Top4& g, long long j) {
  long long r = g.i[0];
#pragma unroll
  for (int k = 1; k < 4; ++k) r = j == k ? g.i[k] : r;
  return r;
}

// Decides pick t from the team's candidates (every member of the team,
// identically): the certified argmax of csrc/cpu/kcenter.cpp.
template <typename Acc, typename Team>
__device__ inline long long decide(const GkParams<Acc>& p, const Team& team, const SetView& s,
                                   long long t, const Top4& g, double second, Scratch& sh,
                                   double* radius2, long long* ambiguous, long long* exact) {
  const double M = g.v[0];
  const double thr = M - 2.0 * p.x.err.E(M);
  int nb = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) nb += (g.v[k] >= 0.0 && g.v[k] >= thr) ? 1 : 0;
  if (nb <= 1) {
    *radius2 = M;
    return g.i[0];
  }
  ++*ambiguous;
  const int par = static_cast<int>(t & 1);
  SetCounters* cnt = p.counters + s.g;
  long long* band = p.band_idx + s.off;
  unsigned long long* val = p.band_val + s.off;
  long long* flg = p.flagged + s.off;
  team.sync();  // every row's value of this step is in memory
  const bool collect = nb == 4 || second >= thr;
  long long count = nb;
  if (collect) {
    for (long long q = team.rank(); q < s.n; q += team.size()) {
      const double v = static_cast<double>(__ldcg(p.m + s.off + q));
      if (v >= 0.0 && v >= thr) band[atomicAdd(&cnt->band[par], 1)] = q;
    }
    team.sync();
    count = *reinterpret_cast<volatile int*>(&cnt->band[par]);
  }
  const int lane = threadIdx.x & 31;
  // R1: each member's float64 distance to the center that gave its value
  for (long long j = team.warp(); j < count; j += team.warps()) {
    const long long y = collect ? __ldcg(band + j) : top4_index(g, j);
    const long long a = __ldcg(p.assign + s.off + y);
    const long long c = center_pos(p, s, a);
    const double u = exact_d2_warp(p.x, row_at(p, s, y), row_at(p, s, c));
    if (lane == 0) {
      const double mm = static_cast<double>(__ldcg(p.m + s.off + y));
      const double mm2 = static_cast<double>(__ldcg(p.m2 + s.off + y));
      const bool certain = u == 0.0 || mm2 - mm > 2.0 * p.x.err.E(mm2);
      val[j] = static_cast<unsigned long long>(__double_as_longlong(u));
      if (!certain) flg[atomicAdd(&cnt->flagged[par], 1)] = j;
    }
  }
  *exact += count;
  team.sync();
  // R2 (rare): uncertain members get a float64 minimum over every center;
  // (member, center) pairs of the uncertain members only, over the team
  const long long nf = *reinterpret_cast<volatile int*>(&cnt->flagged[par]);
  if (nf > 0) {
    const long long K = s.n_sel + t;
    for (long long pair = team.warp(); pair < nf * K; pair += team.warps()) {
      const long long f = pair / K, k = pair - f * K;
      const long long j = __ldcg(flg + f);
      const long long y = collect ? __ldcg(band + j) : top4_index(g, j);
      const double d = exact_d2_warp(p.x, row_at(p, s, y), row_at(p, s, center_pos(p, s, k)));
      if (lane == 0)
        atomicMin(val + j, static_cast<unsigned long long>(__double_as_longlong(d)));
    }
    *exact += nf * K;
    team.sync();
  }
  // R3: the largest float64 value; ties within float64 error: lowest position
  double mx = -1.0;
  for (long long j = team.local_rank(); j < count; j += team.local_size())
    mx = fmax(mx, __longlong_as_double(static_cast<long long>(__ldcg(val + j))));
  mx = local_max(team, mx, sh);
  const double cut = mx - p.x.tie.E(mx);
  long long best = 0x7fffffffffffffffLL;
  for (long long j = team.local_rank(); j < count; j += team.local_size()) {
    const double v = __longlong_as_double(static_cast<long long>(__ldcg(val + j)));
    const long long y = collect ? __ldcg(band + j) : top4_index(g, j);
    if (v >= cut && y < best) best = y;
  }
  best = local_min(team, best, sh);
  *radius2 = mx;
  return best;
}

// Whether the host asked to stop, agreed on by the whole team.
template <typename Acc, typename Team>
__device__ inline bool team_stopped(const GkParams<Acc>& p, const Team& team, long long t,
                                    Scratch& sh) {
  if constexpr (std::is_same<Team, WarpTeam>::value) {
    int v = (threadIdx.x & 31) == 0 ? *p.stop : 0;
    return __shfl_sync(0xffffffffu, v, 0) != 0;
  } else if constexpr (std::is_same<Team, BlockTeam>::value) {
    if (threadIdx.x == 0) sh.flag = *p.stop;
    __syncthreads();
    const bool v = sh.flag != 0;
    __syncthreads();
    return v;
  } else {
    // block 0's view, published before the barrier that ends the step
    int* flag = p.team_stop + 2 * p.block_team[team.first] + static_cast<int>(t & 1);
    if (team.leader()) *flag = *p.stop;
    team.sync();
    const bool v = __ldcg(flag) != 0;
    return v;
  }
}

// Runs set `g` on this team: the initial centers, then every pick.
template <typename T, typename Acc, typename Team>
__device__ void run_set(const GkParams<Acc>& p, const Team& team, long long g, Acc* center,
                        Scratch& sh) {
  SetView s;
  s.g = g;
  s.off = p.offsets[g];
  s.n = p.offsets[g + 1] - s.off;
  s.sel0 = p.sel_off[g];
  s.n_sel = p.sel_off[g + 1] - s.sel0;
  s.pick0 = p.pick_off[g];
  s.budget = p.budgets[g];
  if (s.budget == 0) return;
  long long evals = 0, amb = 0, exact = 0;
  // the initial centers are never candidates; without them the start is pick 0
  for (long long j = team.rank(); j < s.n_sel; j += team.size())
    p.m[s.off + p.sel[s.sel0 + j]] = Acc(-1);
  long long t0 = 0;
  if (s.n_sel == 0) {
    const long long st = p.starts[g];
    if (team.leader()) {
      p.m[s.off + st] = Acc(-1);
      p.picks[s.pick0] = st;
      if (p.radii) p.radii[s.pick0] = INFINITY;
      atomicAdd(p.done, 1ull);
    }
    t0 = 1;
  }
  team.sync();
  if (s.budget <= t0) return;
  Top2 mine;
  const long long n_init = s.n_sel > 0 ? s.n_sel : 1;
  for (long long k = 0; k < n_init; ++k) {
    team.local_sync();  // the previous center may still be read
    load_center(p, team, row_at(p, s, s.n_sel > 0 ? p.sel[s.sel0 + k] : p.starts[g]), center);
    team.local_sync();
    apply_center<T>(p, team, s, center, k, -1, mine, evals);
  }
  Top4 cand;
  double second;
  team_candidates(p, team, mine, t0, sh, &cand, &second);
  double prev = INFINITY;
  for (long long t = t0; t < s.budget; ++t) {
    double r2 = 0;
    const long long w = decide(p, team, s, t, cand, second, sh, &r2, &amb, &exact);
    prev = fmin(prev, fmax(r2, 0.0));
    if (team.leader()) {
      p.picks[s.pick0 + t] = w;
      if (p.radii) p.radii[s.pick0 + t] = p.x.metric == Metric::cosine ? 0.5 * prev : sqrt(prev);
      SetCounters* c = p.counters + g;  // the next step's float64 counters
      c->band[(t + 1) & 1] = 0;
      c->flagged[(t + 1) & 1] = 0;
      atomicAdd(p.done, 1ull);
    }
    if (t + 1 == s.budget) break;
    if ((t % kStopEvery) == 0 && team_stopped(p, team, t, sh)) break;
    team.local_sync();
    load_center(p, team, row_at(p, s, w), center);
    team.local_sync();
    apply_center<T>(p, team, s, center, s.n_sel + t, w, mine, evals);
    team_candidates(p, team, mine, t + 1, sh, &cand, &second);
  }
  // statistics: one atomic per warp
  unsigned long long e = static_cast<unsigned long long>(evals);
  for (int off = 16; off > 0; off >>= 1) e += __shfl_xor_sync(0xffffffffu, e, off);
  if ((threadIdx.x & 31) == 0 && e) atomicAdd(p.stats + 0, e);
  if (team.leader()) {
    atomicAdd(p.stats + 1, static_cast<unsigned long long>(amb));
    atomicAdd(p.stats + 2, static_cast<unsigned long long>(exact));
  }
}

// The one launch: the multi-block teams on the first blocks, then a queue of
// sets for whole blocks, then a queue of sets for single warps.
template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads) gk_run(GkParams<Acc> p) {
  SVP_DYNAMIC_SHARED(unsigned char, smem_raw);
  Acc* centers = reinterpret_cast<Acc*>(smem_raw);
  __shared__ Scratch sh;
  __shared__ int s_item;
  if (static_cast<int>(blockIdx.x) < p.nb_grid) {
    const int team = p.block_team[blockIdx.x];
    GridTeam gt;
    gt.first = p.team_first[team];
    gt.index = static_cast<int>(blockIdx.x) - gt.first;
    gt.blocks = p.team_blocks[team];
    gt.bar = p.barrier + 2 * team;
    run_set<T, Acc>(p, gt, p.team_set[team], centers, sh);
  }
  for (;;) {
    if (threadIdx.x == 0) s_item = *p.stop ? p.n_block_sets : atomicAdd(p.heads + 0, 1);
    __syncthreads();
    const int i = s_item;
    __syncthreads();
    if (i >= p.n_block_sets) break;
    run_set<T, Acc>(p, BlockTeam{}, p.block_queue[i], centers, sh);
  }
  if (p.n_warp_sets == 0) return;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  Acc* mine = centers + w * p.cstride;
  // warps of a block keep their own scratch: the Top4 and reduction slots of
  // WarpTeam are registers and shuffles only
  for (;;) {
    int i = 0;
    if (lane == 0) i = *p.stop ? p.n_warp_sets : atomicAdd(p.heads + 1, 1);
    i = __shfl_sync(0xffffffffu, i, 0);
    if (i >= p.n_warp_sets) break;
    run_set<T, Acc>(p, WarpTeam{}, p.warp_queue[i], mine, sh);
  }
}

// One warp per member row of a set that picks anything: the first NaN/Inf
// (as row * D + column), the first zero row, float64 norms by row, and per
// set the facts of the arithmetic rule (largest |x|, row norms' range).
template <typename T>
__global__ void gk_facts(const char* X, long long D, long long row_bytes, const long long* members,
                         const long long* offsets, const long long* budgets, long long n_sets,
                         long long M, double* norm64, unsigned long long* facts,
                         unsigned long long* set_facts) {
  const int lane = threadIdx.x & 31;
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long q = warp; q < M; q += nwarps) {
    // the set of member q: the last offset <= q
    long long lo = 0, hi = n_sets;
    while (hi - lo > 1) {
      const long long mid = (lo + hi) / 2;
      if (offsets[mid] <= q) lo = mid; else hi = mid;
    }
    if (budgets[lo] == 0) continue;  // never read, as when the set is alone
    const long long r = members[q];
    const char* row = X + r * row_bytes;
    unsigned long long bad = ~0ull;
    double mx = 0.0, ss = 0.0;
    for (long long j = lane; j < D; j += 32) {
      const double v = static_cast<double>(Elem<T>::get(row, j));
      if (!isfinite(v)) {
        const unsigned long long lin = static_cast<unsigned long long>(r * D + j);
        bad = lin < bad ? lin : bad;
      } else {
        mx = fmax(mx, fabs(v));
        ss = fma(v, v, ss);
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const unsigned long long ob = __shfl_xor_sync(0xffffffffu, bad, off);
      bad = ob < bad ? ob : bad;
      mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      ss += __shfl_xor_sync(0xffffffffu, ss, off);
    }
    if (lane == 0) {
      if (bad != ~0ull) {
        atomicMin(facts + 0, bad);
        continue;
      }
      const double nrm = sqrt(ss);
      if (norm64) norm64[r] = nrm;
      if (nrm == 0.0) atomicMin(facts + 1, static_cast<unsigned long long>(r));
      unsigned long long* f = set_facts + 3 * lo;
      atomicMax(f + 0, static_cast<unsigned long long>(__double_as_longlong(mx)));
      atomicMin(f + 1, static_cast<unsigned long long>(__double_as_longlong(nrm)));
      atomicMax(f + 2, static_cast<unsigned long long>(__double_as_longlong(nrm)));
    }
  }
}

template <typename Acc>
__global__ void gk_prepare(Acc* m, Acc* m2, long long* assign, const long long* members,
                           long long M, const double* norm64, Acc* scale) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long q = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; q < M;
       q += stride) {
    m[q] = Acc(INFINITY);
    m2[q] = Acc(INFINITY);
    assign[q] = -1;
    if (norm64) {
      const long long r = members[q];
      scale[r] = static_cast<Acc>(1.0 / norm64[r]);
    }
  }
}

// ---------------------------------------------------------------- host --

struct Sizes {
  long long S = 0, M = 0, n_sel = 0, total = 0;
};

Sizes sizes_of(const KCenterGroups& grp) {
  Sizes z;
  z.S = grp.n_groups;
  z.M = z.S > 0 ? grp.offsets[z.S] : 0;
  z.n_sel = z.S > 0 && grp.selected_offsets ? grp.selected_offsets[z.S] : 0;
  for (long long g = 0; g < z.S; ++g) z.total += grp.budgets[g];
  return z;
}

struct GkLayout {
  long long *members, *offsets, *budgets, *starts, *sel, *sel_off, *pick_off;
  double* norm64;
  void* scale;
  void *m, *m2;
  long long* assign;
  long long* band_idx;
  unsigned long long* band_val;
  long long* flagged;
  SetCounters* counters;
  int *block_team, *team_set, *team_first, *team_blocks, *block_queue, *warp_queue, *heads;
  unsigned* barrier;
  Top4* team_res;
  double* team_second;
  int* team_stop;
  int* stop;
  unsigned long long *done, *stats, *facts, *set_facts;
  int max_blocks;
  int64_t bytes;
};

int max_blocks_bound(int device) {
  int sms = 0, max_threads = 0;
  SVP_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  SVP_CUDA(cudaDeviceGetAttribute(&max_threads, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  return sms * std::max(1, max_threads / kThreads);
}

GkLayout gk_layout(void* base, int64_t cap, const DeviceMatrix& X, const Sizes& z, Metric metric,
                   int max_blocks) {
  GkLayout L{};
  Arena a(base, cap);
  const long long S = std::max<long long>(z.S, 1), M = std::max<long long>(z.M, 1);
  L.members = a.take<long long>(M);
  L.offsets = a.take<long long>(S + 1);
  L.budgets = a.take<long long>(S);
  L.starts = a.take<long long>(S);
  L.sel = a.take<long long>(std::max<long long>(z.n_sel, 1));
  L.sel_off = a.take<long long>(S + 1);
  L.pick_off = a.take<long long>(S + 1);
  const long long rows = metric == Metric::cosine ? X.rows : 1;
  L.norm64 = a.take<double>(rows);
  L.scale = a.take<double>(rows);
  L.m = a.take<double>(M);  // Acc is float64 at most
  L.m2 = a.take<double>(M);
  L.assign = a.take<long long>(M);
  L.band_idx = a.take<long long>(M);
  L.band_val = a.take<unsigned long long>(M);
  L.flagged = a.take<long long>(M);
  L.counters = a.take<SetCounters>(S);
  L.block_team = a.take<int>(max_blocks);
  L.team_set = a.take<int>(S);
  L.team_first = a.take<int>(S);
  L.team_blocks = a.take<int>(S);
  L.block_queue = a.take<int>(S);
  L.warp_queue = a.take<int>(S);
  L.heads = a.take<int>(2);
  L.barrier = a.take<unsigned>(2 * S);
  L.team_res = a.take<Top4>(2LL * max_blocks);
  L.team_second = a.take<double>(2LL * max_blocks);
  L.team_stop = a.take<int>(2 * S);
  L.stop = a.take<int>(1);
  L.done = a.take<unsigned long long>(1);
  L.stats = a.take<unsigned long long>(3);
  L.facts = a.take<unsigned long long>(2);
  L.set_facts = a.take<unsigned long long>(3 * S);
  L.max_blocks = max_blocks;
  L.bytes = a.used();
  return L;
}

// Which team runs which set (host): a set with more than about two blocks'
// share of the work, or more rows than one block should scan, gets several
// blocks; the rest go to the block queue, small ones to the warp queue.
struct TeamPlan {
  std::vector<int> team_set, team_first, team_blocks, block_team, block_queue, warp_queue;
  int nb_grid = 0;
};

TeamPlan plan_teams(const KCenterGroups& grp, int grid, bool warps_allowed, long long D) {
  TeamPlan tp;
  const long long S = grp.n_groups;
  std::vector<long long> active;
  double work = 0;
  for (long long g = 0; g < S; ++g)
    if (grp.budgets[g] > 0) {
      active.push_back(g);
      work += static_cast<double>(grp.offsets[g + 1] - grp.offsets[g]) *
              static_cast<double>(grp.budgets[g]);
    }
  auto work_of = [&](long long g) {
    return static_cast<double>(grp.offsets[g + 1] - grp.offsets[g]) *
           static_cast<double>(grp.budgets[g]);
  };
  std::sort(active.begin(), active.end(), [&](long long a, long long b) {
    return work_of(a) > work_of(b) || (work_of(a) == work_of(b) && a < b);
  });
  std::vector<std::pair<long long, int>> multi;  // (set, blocks)
  long long want = 0;
  std::vector<long long> rest;
  for (long long g : active) {
    const long long n = grp.offsets[g + 1] - grp.offsets[g];
    const long long share = static_cast<long long>(work_of(g) / std::max(work, 1.0) * grid);
    const long long need = (n + kBlockMaxRows - 1) / kBlockMaxRows;
    const long long k = std::min<long long>(grid, std::max(share, need));
    if (k >= 2 && grid >= 3) {
      multi.push_back({g, static_cast<int>(k)});
      want += k;
    } else {
      rest.push_back(g);
    }
  }
  // the multi-block teams may take all blocks but one when other sets wait
  const long long avail = std::max<long long>(2, grid - (rest.empty() ? 0 : 1));
  if (want > avail) {
    long long used = 0;
    std::vector<std::pair<long long, int>> kept;
    for (auto& sk : multi) {
      const long long k = std::max<long long>(2, static_cast<long long>(
                                                     static_cast<double>(sk.second) * avail / want));
      if (used + k <= avail) {
        kept.push_back({sk.first, static_cast<int>(k)});
        used += k;
      } else {
        rest.push_back(sk.first);  // no blocks left: it runs on one block
      }
    }
    multi.swap(kept);
  }
  for (auto& sk : multi) {
    tp.team_set.push_back(static_cast<int>(sk.first));
    tp.team_first.push_back(tp.nb_grid);
    tp.team_blocks.push_back(sk.second);
    for (int b = 0; b < sk.second; ++b) tp.block_team.push_back(static_cast<int>(tp.team_set.size() - 1));
    tp.nb_grid += sk.second;
  }
  for (long long g : rest) {
    const long long n = grp.offsets[g + 1] - grp.offsets[g];
    if (warps_allowed && n <= kWarpMaxRows && D <= kWarpMaxCols)
      tp.warp_queue.push_back(static_cast<int>(g));
    else
      tp.block_queue.push_back(static_cast<int>(g));
  }
  return tp;
}

template <typename T>
void launch_facts(const DeviceMatrix& X, const GkLayout& L, const Sizes& z, Metric metric,
                  cudaStream_t stream) {
  const long long row_bytes = X.row_stride * static_cast<long long>(dtype_size(X.dtype));
  const int grid = static_cast<int>(std::max<long long>(1, std::min<long long>(4096, (z.M + 7) / 8)));
  launch<gk_facts<T>>(grid, 256, 0, stream, static_cast<const char*>(X.data), X.cols, row_bytes,
                                        L.members, L.offsets, L.budgets, z.S, z.M,
                                        metric == Metric::cosine ? L.norm64 : nullptr, L.facts,
                                        L.set_facts);
}

double read_element(const DeviceMatrix& X, long long r, long long c) {
  const size_t es = dtype_size(X.dtype);
  const long long row_bytes = X.row_stride * static_cast<long long>(es);
  unsigned char buf[8] = {0};
  SVP_CUDA(cudaMemcpy(buf, static_cast<const char*>(X.data) + r * row_bytes + c * static_cast<long long>(es),
                      es, cudaMemcpyDeviceToHost));
  if (X.dtype == DType::f32) {
    float f;
    std::memcpy(&f, buf, 4);
    return f;
  }
  if (X.dtype == DType::f64) {
    double v;
    std::memcpy(&v, buf, 8);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, buf, 2);
  const bool neg = h & 0x8000u;
  const bool nan = X.dtype == DType::f16 ? (h & 0x3ffu) != 0 : (h & 0x7fu) != 0;
  return nan ? std::numeric_limits<double>::quiet_NaN()
             : (neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
}

std::string row_name(long long set_rows, long long r) {
  if (set_rows > 0)
    return format("set %lld, point %lld", r / set_rows, r % set_rows);
  return format("row %lld", r);
}

template <typename T, typename Acc>
void run_kernel(const DeviceMatrix& X, const KCenterGroups& grp, const KCenterGroupsCudaOptions& opt,
                const GkLayout& L, const Sizes& z, cudaStream_t stream, bool f64, int64_t* picks,
                double* radii, KCenterStats* st) {
  GkParams<Acc> p{};
  p.x = matrix_params<Acc>(X, opt.metric, L.norm64, L.scale);
  p.x.G = pow2_at_least(X.cols);
  const ErrorModel tie = exact_tie_model(opt.metric, X.cols);
  p.x.tie = tie;
  p.x.err = band_model(error_model(f64, opt.metric, X.cols), tie);
  p.members = L.members;
  p.offsets = L.offsets;
  p.budgets = L.budgets;
  p.starts = L.starts;
  p.sel = L.sel;
  p.sel_off = L.sel_off;
  p.pick_off = L.pick_off;
  p.picks = reinterpret_cast<long long*>(picks);
  p.radii = radii;
  p.m = static_cast<Acc*>(L.m);
  p.m2 = static_cast<Acc*>(L.m2);
  p.assign = L.assign;
  p.band_idx = L.band_idx;
  p.band_val = L.band_val;
  p.flagged = L.flagged;
  p.counters = L.counters;
  p.barrier = L.barrier;
  p.team_res = L.team_res;
  p.team_second = L.team_second;
  p.team_stop = L.team_stop;
  p.heads = L.heads;
  p.stop = L.stop;
  p.done = L.done;
  p.stats = L.stats;
  p.cstride = (X.cols + 3) & ~3LL;  // 16-byte aligned centers

  launch<gk_prepare<Acc>>(1024, 256, 0, stream, p.m, p.m2, p.assign, L.members, z.M,
                                            opt.metric == Metric::cosine ? L.norm64 : nullptr,
                                            static_cast<Acc*>(L.scale));

  // the grid: every block resident at once (the multi-block teams' barrier)
  const size_t one = static_cast<size_t>(p.cstride) * sizeof(Acc);
  const bool warps_allowed = one * kWarps <= (96u << 10);
  const size_t smem = warps_allowed ? one * kWarps : one;
  int max_smem = 0;
  SVP_CUDA(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, X.device));
  if (smem + static_shared_bytes<gk_run<T, Acc>>() > static_cast<size_t>(max_smem))
    throw CudaError(format("svp_fast: the grouped k-center kernel does not fit on this GPU "
                           "(D = %lld needs %zu bytes of shared memory per block)",
                           (long long)X.cols, smem + static_shared_bytes<gk_run<T, Acc>>()));
  allow_dynamic_smem<gk_run<T, Acc>>(smem);
  const int per_sm = max_active_blocks_per_sm<gk_run<T, Acc>>(kThreads, smem);
  int sms = 0;
  SVP_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, X.device));
  if (per_sm < 1)
    throw CudaError(format("svp_fast: the grouped k-center kernel does not fit on this GPU "
                           "(D = %lld)", (long long)X.cols));
  const int grid = std::min(L.max_blocks, per_sm * sms);
  TeamPlan tp = plan_teams(grp, grid, warps_allowed, X.cols);
  const int n_teams = static_cast<int>(tp.team_set.size());
  auto put = [&](int* dst, const std::vector<int>& v) {
    if (!v.empty())
      SVP_CUDA(cudaMemcpyAsync(dst, v.data(), sizeof(int) * v.size(), cudaMemcpyHostToDevice, stream));
  };
  put(L.block_team, tp.block_team);
  put(L.team_set, tp.team_set);
  put(L.team_first, tp.team_first);
  put(L.team_blocks, tp.team_blocks);
  put(L.block_queue, tp.block_queue);
  put(L.warp_queue, tp.warp_queue);
  SVP_CUDA(cudaMemsetAsync(L.heads, 0, 2 * sizeof(int), stream));
  SVP_CUDA(cudaMemsetAsync(L.barrier, 0, 2 * sizeof(unsigned) * std::max(n_teams, 1), stream));
  SVP_CUDA(cudaMemsetAsync(L.team_stop, 0, 2 * sizeof(int) * std::max(n_teams, 1), stream));
  SVP_CUDA(cudaMemsetAsync(L.counters, 0, sizeof(SetCounters) * std::max<long long>(z.S, 1), stream));
  SVP_CUDA(cudaMemsetAsync(L.stop, 0, sizeof(int), stream));
  SVP_CUDA(cudaMemsetAsync(L.done, 0, sizeof(unsigned long long), stream));
  SVP_CUDA(cudaMemsetAsync(L.stats, 0, 3 * sizeof(unsigned long long), stream));
  p.nb_grid = tp.nb_grid;
  p.block_team = L.block_team;
  p.team_set = L.team_set;
  p.team_first = L.team_first;
  p.team_blocks = L.team_blocks;
  p.block_queue = L.block_queue;
  p.n_block_sets = static_cast<int>(tp.block_queue.size());
  p.warp_queue = L.warp_queue;
  p.n_warp_sets = static_cast<int>(tp.warp_queue.size());
  // the host vectors above must outlive their asynchronous copies
  SVP_CUDA(cudaStreamSynchronize(stream));

  const auto t_select = Clock::now();
  launch_cooperative<gk_run<T, Acc>>(grid, kThreads, smem, stream, p);
  cudaEvent_t finished;
  SVP_CUDA(cudaEventCreateWithFlags(&finished, cudaEventDisableTiming));
  cudaStream_t side = nullptr;
  unsigned long long* host_done = nullptr;
  bool cancelled = false;
  try {
    SVP_CUDA(cudaEventRecord(finished, stream));
    // while the kernel runs: the picks so far, read on a stream of their own
    SVP_CUDA(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    SVP_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&host_done), 2 * sizeof(unsigned long long),
                           cudaHostAllocDefault));
    const auto slice = std::chrono::milliseconds(2);
    auto last = Clock::now();
    for (;;) {
      const cudaError_t q = cudaEventQuery(finished);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) throw_cuda(q, "gk_run", __FILE__, __LINE__);
      std::this_thread::sleep_for(slice);
      if (!opt.progress || cancelled ||
          std::chrono::duration<double>(Clock::now() - last).count() < opt.poll_interval)
        continue;
      last = Clock::now();
      SVP_CUDA(cudaMemcpyAsync(host_done, L.done, sizeof(unsigned long long),
                               cudaMemcpyDeviceToHost, side));
      SVP_CUDA(cudaStreamSynchronize(side));
      if (!opt.progress->poll(static_cast<int64_t>(host_done[0]), nullptr)) {
        cancelled = true;
        const int one_flag = 1;
        SVP_CUDA(cudaMemcpyAsync(L.stop, &one_flag, sizeof(int), cudaMemcpyHostToDevice, side));
        SVP_CUDA(cudaStreamSynchronize(side));
      }
    }
    SVP_CUDA(cudaStreamSynchronize(stream));
  } catch (...) {
    cudaStreamSynchronize(stream);  // nothing may still write into the caller's buffers
    cudaEventDestroy(finished);
    if (side) cudaStreamDestroy(side);
    if (host_done) cudaFreeHost(host_done);
    throw;
  }
  cudaEventDestroy(finished);
  cudaStreamDestroy(side);
  cudaFreeHost(host_done);
  if (cancelled) throw Cancelled();
  if (opt.progress && !opt.progress->poll(z.total, nullptr)) throw Cancelled();
  unsigned long long hs[3];
  SVP_CUDA(cudaMemcpy(hs, L.stats, sizeof(hs), cudaMemcpyDeviceToHost));
  st->distance_evals = static_cast<int64_t>(hs[0]);
  st->ambiguous_steps = static_cast<int64_t>(hs[1]);
  st->exact_distance_evals = static_cast<int64_t>(hs[2]);
  st->select_seconds = std::chrono::duration<double>(Clock::now() - t_select).count();
}

template <typename Acc>
void run_acc(const DeviceMatrix& X, const KCenterGroups& grp, const KCenterGroupsCudaOptions& opt,
             const GkLayout& L, const Sizes& z, cudaStream_t stream, bool f64, int64_t* picks,
             double* radii, KCenterStats* st) {
  switch (X.dtype) {
    case DType::f32: return run_kernel<float, Acc>(X, grp, opt, L, z, stream, f64, picks, radii, st);
    case DType::f16: return run_kernel<__half, Acc>(X, grp, opt, L, z, stream, f64, picks, radii, st);
    case DType::bf16:
      return run_kernel<__nv_bfloat16, Acc>(X, grp, opt, L, z, stream, f64, picks, radii, st);
    case DType::f64:
      if constexpr (sizeof(Acc) == 8)
        return run_kernel<double, Acc>(X, grp, opt, L, z, stream, f64, picks, radii, st);
      break;
  }
  throw CudaError("svp_fast internal error: float64 input needs float64 arithmetic");
}

void check_host_groups(const DeviceMatrix& X, const KCenterGroups& grp, const char* name) {
  const long long S = grp.n_groups;
  SVP_CHECK_ARG(X.cols >= 1, "%s must have at least one column, got %lld", name, (long long)X.cols);
  SVP_CHECK_ARG(S >= 0, "groups: expected a non-negative number of groups, got %lld", S);
  if (S == 0) return;
  SVP_CHECK_ARG(grp.offsets && grp.budgets && grp.starts, "groups: offsets, budgets and starts are required");
  SVP_CHECK_ARG(grp.cells == nullptr, "the GPU runs every group as the scan: cells must be null");
  SVP_CHECK_ARG(grp.offsets[0] == 0, "groups: offsets[0] must be 0, got %lld", (long long)grp.offsets[0]);
  for (long long g = 0; g < S; ++g) {
    const long long n = grp.offsets[g + 1] - grp.offsets[g];
    SVP_CHECK_ARG(n >= 0, "groups: offsets must not decrease (group %lld)", g);
    const long long ns = grp.selected_offsets ? grp.selected_offsets[g + 1] - grp.selected_offsets[g] : 0;
    SVP_CHECK_ARG(ns >= 0 && ns <= n, "groups: group %lld has %lld already selected for %lld points", g, ns, n);
    SVP_CHECK_ARG(grp.budgets[g] >= 0 && grp.budgets[g] <= n - ns,
                  "budget of group %lld must be in [0, %lld], got %lld", g, n - ns,
                  (long long)grp.budgets[g]);
    if (ns == 0 && grp.budgets[g] > 0)
      SVP_CHECK_ARG(grp.starts[g] >= 0 && grp.starts[g] < n,
                    "start of group %lld must be in [0, %lld), got %lld", g, n, (long long)grp.starts[g]);
    std::vector<char> seen(static_cast<size_t>(n), 0);
    for (long long j = 0; j < ns; ++j) {
      const long long q = grp.selected[grp.selected_offsets[g] + j];
      SVP_CHECK_ARG(q >= 0 && q < n, "already selected position %lld of group %lld is out of range [0, %lld)", q, g, n);
      SVP_CHECK_ARG(!seen[q], "group %lld holds already selected position %lld twice", g, q);
      seen[q] = 1;
    }
  }
  const long long M = grp.offsets[S];
  for (long long q = 0; q < M; ++q)
    SVP_CHECK_ARG(grp.members[q] >= 0 && grp.members[q] < X.rows,
                  "groups: member %lld is row %lld, out of range [0, %lld)", q,
                  (long long)grp.members[q], (long long)X.rows);
}

}  // namespace

int64_t kcenter_groups_cuda_workspace(const DeviceMatrix& X, const KCenterGroups& grp,
                                      const KCenterGroupsCudaOptions& opt) {
  DeviceGuard guard(X.device);
  return gk_layout(nullptr, 0, X, sizes_of(grp), opt.metric, max_blocks_bound(X.device)).bytes;
}

void kcenter_groups_cuda(const DeviceMatrix& X, const KCenterGroups& grp,
                         const KCenterGroupsCudaOptions& opt, void* workspace,
                         int64_t workspace_bytes, int64_t* picks, double* radii,
                         KCenterStats* group_stats, KCenterStats* total) {
  const auto t_setup = Clock::now();
  const char* name = opt.arg_name ? opt.arg_name : "embeddings";
  KCenterStats local;
  KCenterStats* st = total ? total : &local;
  *st = KCenterStats();
  check_host_groups(X, grp, name);
  const Sizes z = sizes_of(grp);
  st->method_used = static_cast<int>(KCenterMethod::scan);
  if (group_stats)
    for (long long g = 0; g < z.S; ++g) {
      group_stats[g] = KCenterStats();
      group_stats[g].method_used = static_cast<int>(KCenterMethod::scan);
    }
  if (z.total == 0) return;

  DeviceGuard guard(X.device);
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(X.stream);
  GkLayout L = gk_layout(workspace, workspace_bytes, X, z, opt.metric, max_blocks_bound(X.device));
  std::vector<long long> pick_off(static_cast<size_t>(z.S + 1), 0);
  for (long long g = 0; g < z.S; ++g) pick_off[g + 1] = pick_off[g] + grp.budgets[g];
  std::vector<long long> sel_off(static_cast<size_t>(z.S + 1), 0);
  if (grp.selected_offsets) std::copy(grp.selected_offsets, grp.selected_offsets + z.S + 1, sel_off.begin());
  auto put = [&](long long* dst, const void* src, long long n) {
    if (n > 0)
      SVP_CUDA(cudaMemcpyAsync(dst, src, sizeof(long long) * n, cudaMemcpyHostToDevice, stream));
  };
  put(L.members, grp.members, z.M);
  put(L.offsets, grp.offsets, z.S + 1);
  put(L.budgets, grp.budgets, z.S);
  put(L.starts, grp.starts, z.S);
  put(L.sel, grp.selected, z.n_sel);
  put(L.sel_off, sel_off.data(), z.S + 1);
  put(L.pick_off, pick_off.data(), z.S + 1);
  // validation: one pass over the rows of the sets that pick, one synchronisation
  const unsigned long long init_facts[2] = {~0ull, ~0ull};
  SVP_CUDA(cudaMemcpyAsync(L.facts, init_facts, sizeof(init_facts), cudaMemcpyHostToDevice, stream));
  std::vector<unsigned long long> sf(static_cast<size_t>(3 * z.S));
  for (long long g = 0; g < z.S; ++g) {
    sf[3 * g] = 0ull;
    sf[3 * g + 1] = 0x7ff0000000000000ull;  // +inf
    sf[3 * g + 2] = 0ull;
  }
  SVP_CUDA(cudaMemcpyAsync(L.set_facts, sf.data(), sizeof(unsigned long long) * sf.size(),
                           cudaMemcpyHostToDevice, stream));
  switch (X.dtype) {
    case DType::f32: launch_facts<float>(X, L, z, opt.metric, stream); break;
    case DType::f16: launch_facts<__half>(X, L, z, opt.metric, stream); break;
    case DType::bf16: launch_facts<__nv_bfloat16>(X, L, z, opt.metric, stream); break;
    case DType::f64: launch_facts<double>(X, L, z, opt.metric, stream); break;
  }
  unsigned long long facts[2];
  SVP_CUDA(cudaMemcpyAsync(facts, L.facts, sizeof(facts), cudaMemcpyDeviceToHost, stream));
  SVP_CUDA(cudaMemcpyAsync(sf.data(), L.set_facts, sizeof(unsigned long long) * sf.size(),
                           cudaMemcpyDeviceToHost, stream));
  SVP_CUDA(cudaStreamSynchronize(stream));
  const long long D = X.cols;
  if (facts[0] != ~0ull) {
    const long long r = static_cast<long long>(facts[0] / static_cast<unsigned long long>(D));
    const long long c = static_cast<long long>(facts[0] % static_cast<unsigned long long>(D));
    throw ValueError(format("%s must be finite, got %g at %s, column %lld", name,
                            read_element(X, r, c), row_name(grp.set_rows, r).c_str(), c));
  }
  if (opt.metric == Metric::cosine && facts[1] != ~0ull)
    throw ValueError(format("%s %s is all zeros; the cosine metric needs rows of nonzero norm",
                            name, row_name(grp.set_rows, static_cast<long long>(facts[1])).c_str()));
  // one arithmetic for every set: float64 when any set needs it (the picks
  // are the float64 reference's either way; only the speed differs)
  bool f64 = X.dtype == DType::f64;
  double max_abs_all = 0;
  for (long long g = 0; g < z.S; ++g) {
    if (grp.budgets[g] == 0 || grp.offsets[g + 1] == grp.offsets[g]) continue;
    double mx, lo, hi;
    std::memcpy(&mx, &sf[3 * g], 8);
    std::memcpy(&lo, &sf[3 * g + 1], 8);
    std::memcpy(&hi, &sf[3 * g + 2], 8);
    max_abs_all = std::max(max_abs_all, mx);
    f64 = f64 || needs_float64(X.dtype, opt.metric, D, mx, lo, hi);
  }
  if (X.dtype == DType::f64)
    SVP_CHECK_ARG(max_abs_all <= 1e150,
                  "%s holds values up to %g, whose squared distances overflow float64; "
                  "rescale the embeddings", name, max_abs_all);
  st->float64_accumulation = f64;
  // what a plain scan evaluates, as on the CPU, per group
  for (long long g = 0; g < z.S; ++g) {
    const long long n = grp.offsets[g + 1] - grp.offsets[g];
    const long long ns = sel_off[g + 1] - sel_off[g];
    const long long b = grp.budgets[g];
    if (b == 0) continue;
    const long long n_init = ns > 0 ? ns : 1;
    long long live = n - n_init, tot = n_init * live;
    for (long long t = (ns > 0 ? 0 : 1); t + 1 < b; ++t) tot += --live;
    const long long scan = (ns == 0 && b <= 1) ? 0 : tot;
    st->scan_evals += scan;
    if (group_stats) {
      group_stats[g].scan_evals = scan;
      group_stats[g].float64_accumulation = f64;
    }
  }
  st->setup_seconds = std::chrono::duration<double>(Clock::now() - t_setup).count();
  if (f64)
    run_acc<double>(X, grp, opt, L, z, stream, f64, picks, radii, st);
  else
    run_acc<float>(X, grp, opt, L, z, stream, f64, picks, radii, st);
}

}  // namespace cuda
}  // namespace svp
