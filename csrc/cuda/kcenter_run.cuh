// The picking loop of CUDA k-center: its kernels (initial centers, the
// persistent cooperative step kernel) and its host loop, run_steps. Included
// only by the translation units CMake generates from kcenter_instance.cu.in,
// one per (dtype, accumulation, lanes, vector loads) variant (see
// kcenter_layout.cuh).
//
// Per step, every block: (1) decides pick t from the block candidates of the
// previous step (all blocks compute the same global top-4, so the winner is
// known everywhere without another synchronisation); (2) applies the winner
// to the rows it owns (one fused pass: distance, min update, candidates);
// (3) one grid-wide barrier. Ambiguous steps add float64 phases inside the
// same kernel. The host enqueues chunks of steps and never waits per step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "kcenter_layout.cuh"
#include "kcenter_pruned.cuh"
#include "kcenter_steps.cuh"

namespace svp {
namespace cuda {
namespace detail {


using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------ kernels --

template <typename Acc>
__global__ void kc_exclude(KcParams<Acc> p, const long long* rows, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long k = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; k < n; k += stride)
    p.m[pos_of(p, rows[k])] = Acc(-1);
}

// Apply q initial centers (rows rows[0..q), ordinals ord0..) to every row; the
// last batch also leaves the block candidates for the first decision.
template <typename T, typename Acc, int CPL, bool VEC>
__global__ void __launch_bounds__(kThreads) kc_init(KcParams<Acc> p, const long long* rows, int q,
                                                    long long ord0, int write_par) {
  SVP_DYNAMIC_SHARED(unsigned char, smem_raw);
  Acc* cs = reinterpret_cast<Acc*>(smem_raw);
  __shared__ Top4 scratch[kThreads / 32];
  const long long cstride = (p.D + 3) & ~3LL;  // 16-byte aligned centers
  for (int k = 0; k < q; ++k) load_center(p, rows[k], cs + k * cstride);
  __syncthreads();
  Top2 mine;
  top2_clear(mine);
  long long evals = 0;
  apply_centers<T, Acc, CPL, VEC>(p, cs, cstride, q, ord0, -1, mine, evals);
  unsigned long long e = static_cast<unsigned long long>(evals);
  for (int off = 16; off > 0; off >>= 1) e += __shfl_xor_sync(0xffffffffu, e, off);
  if ((threadIdx.x & 31) == 0 && e)
    atomicAdd(reinterpret_cast<unsigned long long*>(&p.state->distance_evals), e);
  if (write_par >= 0)
    write_block_candidates(mine, p.blockres + write_par * p.max_blocks,
                           p.blocksecond + write_par * p.max_blocks, scratch);
}

// Picks t_begin..t_end-1. Launched cooperatively with a grid that fits on the
// device at once (grid.sync), on the caller's stream.
template <typename T, typename Acc, int CPL, bool VEC>
__global__ void __launch_bounds__(kThreads) kc_steps(KcParams<Acc> p, long long t_begin,
                                                     long long t_end) {
  SVP_DYNAMIC_SHARED(unsigned char, smem_raw);
  Acc* cs = reinterpret_cast<Acc*>(smem_raw);
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
    if (t + 1 < p.budget) {
      __syncthreads();  // cs may still be read by a slow warp of the previous step
      load_center(p, w, cs);
      __syncthreads();
      Top2 mine;
      top2_clear(mine);
      apply_centers<T, Acc, CPL, VEC>(p, cs, p.D, 1, p.n_sel + t, w, mine, evals);
      write_block_candidates(mine, p.blockres + ((t + 1) & 1) * p.max_blocks,
                             p.blocksecond + ((t + 1) & 1) * p.max_blocks, scratch);
      grid.sync();
    }
  }
  unsigned long long e = static_cast<unsigned long long>(evals);
  for (int off = 16; off > 0; off >>= 1) e += __shfl_xor_sync(0xffffffffu, e, off);
  if ((threadIdx.x & 31) == 0 && e) atomicAdd(reinterpret_cast<unsigned long long*>(&p.state->distance_evals), e);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    p.state->t = t_end;
    p.state->prev_radius = prev;
    p.state->ambiguous_steps += amb;
    p.state->exact_evals += exact;
  }
}

// ---------------------------------------------------------------- host --

template <typename T, typename Acc, int CPL, bool VEC>
void run_steps(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
               const Layout& L, cudaStream_t stream, int64_t t0, KCenterStats* st) {
  const int device = X.device;
  const size_t center_bytes = static_cast<size_t>(X.cols) * sizeof(Acc);
  const size_t center_stride_bytes = static_cast<size_t>((X.cols + 3) & ~3LL) * sizeof(Acc);
  // initial centers, up to q per pass (they share each row's load)
  const std::vector<long long> init = opt.n_selected > 0
                                          ? std::vector<long long>(opt.already_selected,
                                                                   opt.already_selected + opt.n_selected)
                                          : std::vector<long long>{opt.start};
  const int q_max = static_cast<int>(std::max<size_t>(1, std::min<size_t>(16, (96u << 10) / center_stride_bytes)));
  const size_t init_smem = center_stride_bytes * static_cast<size_t>(q_max);
  const bool use_cells = p.n_cells > 0;
  // pruned steps keep the center twice: in Acc for distances, in float64 for bounds
  const size_t step_smem = use_cells ? ((center_bytes + 15) / 16) * 16 + static_cast<size_t>(X.cols) * 8
                                     : center_bytes;
  constexpr auto init_fn = kc_init<T, Acc, CPL, VEC>;
  constexpr auto scan_fn = kc_steps<T, Acc, CPL, VEC>;
  constexpr auto pruned_fn = kc_steps_pruned<T, Acc, CPL, VEC>;
  // the pruned kernel may hand over to the scan mid-run (auto's fallback);
  // then both run on the one grid sized here
  const bool may_hand_over = use_cells && opt.fallback_fraction <= 1.0;
  const KernelFit fit(device, X.cols);
  const size_t scan_smem = center_bytes;
  fit.allow<init_fn>(init_smem, "initial-centers");
  fit.allow<scan_fn>(scan_smem, "scan");
  if (use_cells) fit.allow<pruned_fn>(step_smem, "pruned");
  int per_sm = use_cells ? fit.blocks_per_sm<pruned_fn>(kThreads, step_smem, "pruned")
                         : fit.blocks_per_sm<scan_fn>(kThreads, scan_smem, "scan");
  if (may_hand_over) per_sm = std::min(per_sm, fit.blocks_per_sm<scan_fn>(kThreads, scan_smem, "scan"));
  // a cooperative grid must be resident at once: for every kernel launched on it
  const int grid = std::min(L.max_blocks, per_sm * fit.sms);
  p.max_blocks = L.max_blocks;

  Poller poll(opt.progress, opt.poll_interval);
  const bool pruned = p.n_cells > 0;
  std::vector<cudaEvent_t> events;
  std::vector<long long> event_t;
  long long done = t0;
  try {
  if (pruned) setup_cells(X, opt, p, L, stream);
  {
    const long long n_excl = opt.n_selected > 0 ? opt.n_selected : 1;
    launch<kc_exclude<Acc>>(static_cast<int>(std::max<long long>(1, std::min<long long>(1024, (n_excl + 255) / 256))), 256, 0, stream, p, L.init_rows, n_excl);
  }
  const long long* d_init = L.init_rows;
  for (size_t k = 0; k < init.size(); k += static_cast<size_t>(q_max)) {
    const int q = static_cast<int>(std::min<size_t>(static_cast<size_t>(q_max), init.size() - k));
    const bool last = k + static_cast<size_t>(q) >= init.size();
    launch<init_fn>(grid, kThreads, init_smem, stream, p, d_init + k, q, static_cast<long long>(k),
                                                    last ? static_cast<int>(t0 & 1) : -1);
    poll(0);
  }
  if (pruned) {
    launch<pr_ctop_all<Acc>>(1024, 256, 0, stream, p);
  }
  // picks in chunks of steps sized to about 50 ms of memory traffic, so that
  // Ctrl-C and progress are served a few times a second
  const double bytes_per_step =
      static_cast<double>(X.rows) * static_cast<double>(X.cols) * static_cast<double>(dtype_size(X.dtype));
  const double est_step_s = bytes_per_step / 3e12 + 4e-6;
  const long long chunk = std::max<long long>(1, std::min<long long>(1 << 16, static_cast<long long>(0.05 / est_step_s)));
    bool cells_on = use_cells;
    long long scanned_before = 0;
    // the hand-off is decided between chunks, first after pick 256: a chunk
    // ends there, so that even a short run can hand over
    const long long first_check = 256;
    for (long long t = t0, t_end; t < opt.budget; t = t_end) {
      t_end = std::min<long long>(opt.budget, t + chunk);
      if (may_hand_over && t < first_check && t_end > first_check) t_end = first_check;
      if (cells_on)
        launch_cooperative<pruned_fn>(grid, kThreads, step_smem, stream, p, t, t_end);
      else
        launch_cooperative<scan_fn>(grid, kThreads, scan_smem, stream, p, t, t_end);
      cudaEvent_t ev;
      SVP_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      SVP_CUDA(cudaEventRecord(ev, stream));
      events.push_back(ev);
      event_t.push_back(t_end);
      // keep at most two chunks in flight; report what has finished
      while (!events.empty()) {
        const bool must_wait = events.size() > 2;
        cudaError_t q = must_wait ? cudaEventSynchronize(events.front()) : cudaEventQuery(events.front());
        if (q == cudaErrorNotReady) break;
        if (q != cudaSuccess) throw_cuda(q, "kc_steps", __FILE__, __LINE__);
        done = event_t.front();
        cudaEventDestroy(events.front());
        events.erase(events.begin());
        event_t.erase(event_t.begin());
      }
      poll(done);
      if (cells_on && may_hand_over) {
        // does pruning pay? one small synchronisation per chunk while pruned
        KcState h;
        SVP_CUDA(cudaMemcpyAsync(&h, L.state, sizeof(KcState), cudaMemcpyDeviceToHost, stream));
        SVP_CUDA(cudaStreamSynchronize(stream));
        const long long steps = t_end - t;
        const double live = static_cast<double>(X.rows - opt.n_selected - t_end);
        const double frac = static_cast<double>(h.scanned - scanned_before) /
                            std::max(1.0, live * static_cast<double>(steps));
        scanned_before = h.scanned;
        if (frac >= 0.95 || (t_end >= first_check && frac > opt.fallback_fraction)) {
          // hand the state over to the scan: rows back in their own order
          Acc* m_rows = reinterpret_cast<Acc*>(L.band_val);
          Acc* m2_rows = reinterpret_cast<Acc*>(L.band_idx);
          long long* as_rows = L.perm_tmp;
          launch<pr_to_rows<Acc>>(1024, 256, 0, stream, p, m_rows, m2_rows, as_rows);
          SVP_CUDA(cudaMemcpyAsync(p.m, m_rows, sizeof(Acc) * X.rows, cudaMemcpyDeviceToDevice, stream));
          SVP_CUDA(cudaMemcpyAsync(p.m2, m2_rows, sizeof(Acc) * X.rows, cudaMemcpyDeviceToDevice, stream));
          SVP_CUDA(cudaMemcpyAsync(p.assign, as_rows, sizeof(long long) * X.rows,
                                   cudaMemcpyDeviceToDevice, stream));
          p.n_cells = 0;
          p.perm = nullptr;
          p.where = nullptr;
          // the grid was sized for both kernels; the scan keeps one center
          cells_on = false;
          st->fallback_step = t_end;
        }
      }
    }
    SVP_CUDA(cudaStreamSynchronize(stream));
  } catch (...) {
    cudaStreamSynchronize(stream);  // nothing may still write into the caller's buffers
    for (cudaEvent_t ev : events) cudaEventDestroy(ev);
    throw;
  }
  for (cudaEvent_t ev : events) cudaEventDestroy(ev);
  poll(opt.budget, nullptr, true);
  KcState h;
  SVP_CUDA(cudaMemcpy(&h, L.state, sizeof(KcState), cudaMemcpyDeviceToHost));
  st->method_used = static_cast<int>(use_cells ? KCenterMethod::pruned : KCenterMethod::scan);
  st->ambiguous_steps = h.ambiguous_steps;
  st->exact_distance_evals = h.exact_evals;
  st->distance_evals = h.distance_evals;
}

}  // namespace detail
}  // namespace cuda
}  // namespace svp
