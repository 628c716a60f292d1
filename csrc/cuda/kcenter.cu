// CUDA k-center: validation, initial centers, and the picking loop as a
// persistent cooperative kernel.
//
// Per step, every block: (1) decides pick t from the block candidates of the
// previous step (all blocks compute the same global top-4, so the winner is
// known everywhere without another synchronisation); (2) applies the winner
// to the rows it owns (one fused pass: distance, min update, candidates);
// (3) one grid-wide barrier. Ambiguous steps add float64 phases inside the
// same kernel. The host enqueues chunks of steps and never waits per step.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include <cub/device/device_segmented_sort.cuh>

#include "kcenter_pruned.cuh"
#include "kcenter_steps.cuh"

namespace svp {
namespace cuda {

namespace {

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
  extern __shared__ unsigned char smem_raw[];
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
  extern __shared__ unsigned char smem_raw[];
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

struct Layout {
  double* norm64 = nullptr;
  void* scale = nullptr;
  void* m = nullptr;
  void* m2 = nullptr;
  long long* assign = nullptr;
  long long* init_rows = nullptr;
  KcState* state = nullptr;
  Top4* blockres = nullptr;
  double* blocksecond = nullptr;
  long long* band_idx = nullptr;
  unsigned long long* band_val = nullptr;
  int* band_flag = nullptr;
  int* band_count = nullptr;
  int* band_any = nullptr;
  unsigned long long* facts = nullptr;
  // pruned method
  long long* lo = nullptr;
  unsigned long long* counts = nullptr;
  unsigned long long* fill = nullptr;
  long long* perm_tmp = nullptr;
  long long* perm = nullptr;
  long long* where = nullptr;
  int* cellpos = nullptr;
  double* p_tmp = nullptr;
  double* p = nullptr;
  float* centroid = nullptr;
  double* radius = nullptr;
  Top2* ctop = nullptr;
  double* m2floor = nullptr;
  int* active = nullptr;
  int* n_active = nullptr;
  int* slab_cell = nullptr;
  long long* slab_range = nullptr;
  double* slab_dc = nullptr;
  int* n_slabs = nullptr;
  long long slab_cap = 0;
  int* bad = nullptr;
  void* sort_temp = nullptr;
  size_t sort_bytes = 0;
  int max_blocks = 0;
  int64_t bytes = 0;
};

int max_blocks_bound(int device) {
  int sms = 0;
  SVP_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  int max_threads = 0;
  SVP_CUDA(cudaDeviceGetAttribute(&max_threads, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  return sms * std::max(1, max_threads / kThreads);
}

Layout layout(void* base, int64_t cap, const DeviceMatrix& X, const KCenterCudaOptions& opt,
              int max_blocks) {
  Layout L;
  Arena a(base, cap);
  const long long n = X.rows;
  // Acc is float64 at most: size the per-point arrays for it
  L.norm64 = a.take<double>(opt.metric == Metric::cosine ? n : 1);
  L.scale = a.take<double>(opt.metric == Metric::cosine ? n : 1);
  L.m = a.take<double>(n);
  L.m2 = a.take<double>(n);
  L.assign = a.take<long long>(n);
  L.init_rows = a.take<long long>(std::max<long long>(opt.n_selected, 1));
  L.state = a.take<KcState>(1);
  L.blockres = a.take<Top4>(2LL * max_blocks);
  L.blocksecond = a.take<double>(2LL * max_blocks);
  L.band_idx = a.take<long long>(n);
  L.band_val = a.take<unsigned long long>(n);
  L.band_flag = a.take<int>(n);
  L.band_count = a.take<int>(2);
  L.band_any = a.take<int>(2);
  L.facts = a.take<unsigned long long>(8);
  if (opt.method == KCenterMethod::pruned && opt.n_cells > 0) {
    const long long nc = opt.n_cells;
    L.lo = a.take<long long>(nc + 1);
    L.counts = a.take<unsigned long long>(nc);
    L.fill = a.take<unsigned long long>(nc);
    L.perm_tmp = a.take<long long>(n);
    L.perm = a.take<long long>(n);
    L.where = a.take<long long>(n);
    L.cellpos = a.take<int>(n);
    L.p_tmp = a.take<double>(n);
    L.p = a.take<double>(n);
    L.centroid = a.take<float>(nc * X.cols);
    L.radius = a.take<double>(nc);
    L.ctop = a.take<Top2>(nc);
    L.m2floor = a.take<double>(nc);
    L.active = a.take<int>(nc);
    L.n_active = a.take<int>(2);
    L.slab_cap = n / kSlab + nc + 1;  // slabs of kSlab members, at most one partial per cell
    L.slab_cell = a.take<int>(L.slab_cap);
    L.slab_range = a.take<long long>(2 * L.slab_cap);
    L.slab_dc = a.take<double>(L.slab_cap);
    L.n_slabs = a.take<int>(2);
    L.bad = a.take<int>(1);
    size_t sb = 0;
    cub::DeviceSegmentedSort::SortPairs(nullptr, sb, static_cast<const double*>(nullptr),
                                        static_cast<double*>(nullptr),
                                        static_cast<const long long*>(nullptr),
                                        static_cast<long long*>(nullptr), n,
                                        static_cast<long long>(nc),
                                        static_cast<const long long*>(nullptr),
                                        static_cast<const long long*>(nullptr));
    L.sort_bytes = sb;
    L.sort_temp = a.take<unsigned char>(static_cast<int64_t>(sb));
  }
  L.max_blocks = max_blocks;
  L.bytes = a.used();
  return L;
}

// Cells on the device: members grouped by cell, centroids, distances to the
// centroid sorted within each cell. One synchronisation (the cell sizes).
template <typename Acc>
void setup_cells(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
                 const Layout& L, cudaStream_t stream) {
  const long long n = X.rows, nc = opt.n_cells;
  SVP_CUDA(cudaMemsetAsync(L.counts, 0, sizeof(unsigned long long) * nc, stream));
  SVP_CUDA(cudaMemsetAsync(L.fill, 0, sizeof(unsigned long long) * nc, stream));
  SVP_CUDA(cudaMemsetAsync(L.bad, 0, sizeof(int), stream));
  SVP_CUDA(cudaMemsetAsync(L.n_active, 0, 2 * sizeof(int), stream));
  SVP_CUDA(cudaMemsetAsync(L.n_slabs, 0, 2 * sizeof(int), stream));
  pr_hist<<<1024, 256, 0, stream>>>(reinterpret_cast<const long long*>(opt.cell_of), n, nc, L.counts, L.bad);
  SVP_CUDA_LAUNCH_CHECK("pr_hist");
  std::vector<unsigned long long> counts(static_cast<size_t>(nc));
  int bad = 0;
  SVP_CUDA(cudaMemcpyAsync(counts.data(), L.counts, sizeof(unsigned long long) * nc,
                           cudaMemcpyDeviceToHost, stream));
  SVP_CUDA(cudaMemcpyAsync(&bad, L.bad, sizeof(int), cudaMemcpyDeviceToHost, stream));
  SVP_CUDA(cudaStreamSynchronize(stream));
  SVP_CHECK_ARG(!bad, "cells must hold cell ids in [0, %lld)", nc);
  std::vector<long long> lo(static_cast<size_t>(nc + 1), 0);
  for (long long k = 0; k < nc; ++k) lo[k + 1] = lo[k] + static_cast<long long>(counts[k]);
  SVP_CUDA(cudaMemcpyAsync(L.lo, lo.data(), sizeof(long long) * (nc + 1), cudaMemcpyHostToDevice, stream));
  pr_scatter<<<1024, 256, 0, stream>>>(reinterpret_cast<const long long*>(opt.cell_of), n, L.lo, L.fill, L.perm_tmp);
  SVP_CUDA_LAUNCH_CHECK("pr_scatter");
  pr_cells<Acc><<<static_cast<int>(nc), 256, 0, stream>>>(p, L.perm_tmp, L.cellpos, L.centroid);
  SVP_CUDA_LAUNCH_CHECK("pr_cells");
  pr_point_dist<Acc><<<4096, 256, 0, stream>>>(p, L.perm_tmp, L.cellpos, L.centroid, L.p_tmp);
  SVP_CUDA_LAUNCH_CHECK("pr_point_dist");
  size_t sb = L.sort_bytes;
  SVP_CUDA(cub::DeviceSegmentedSort::SortPairs(L.sort_temp, sb, L.p_tmp, L.p, L.perm_tmp, L.perm, n,
                                               nc, L.lo, L.lo + 1, stream));
  pr_finish<Acc><<<1024, 256, 0, stream>>>(p, L.where, L.radius, L.m2floor);
  SVP_CUDA_LAUNCH_CHECK("pr_finish");
  // the host vector lo must outlive its asynchronous copy
  SVP_CUDA(cudaStreamSynchronize(stream));
}

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
  auto init_fn = kc_init<T, Acc, CPL, VEC>;
  auto step_fn = use_cells ? reinterpret_cast<const void*>(kc_steps_pruned<T, Acc, CPL, VEC>)
                           : reinterpret_cast<const void*>(kc_steps<T, Acc, CPL, VEC>);
  if (init_smem > (48u << 10))
    SVP_CUDA(cudaFuncSetAttribute(init_fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(init_smem)));
  if (step_smem > (48u << 10))
    SVP_CUDA(cudaFuncSetAttribute(step_fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(step_smem)));
  int per_sm = 0;
  SVP_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, step_fn, kThreads, step_smem));
  int sms = 0;
  SVP_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (per_sm < 1)
    throw CudaError(format("svp_fast: the k-center kernel does not fit on this GPU "
                           "(D = %lld needs %zu bytes of shared memory per block)",
                           (long long)X.cols, step_smem));
  const int grid = std::min(L.max_blocks, per_sm * sms);
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
    kc_exclude<Acc><<<static_cast<int>(std::max<long long>(1, std::min<long long>(1024, (n_excl + 255) / 256))), 256, 0, stream>>>(p, L.init_rows, n_excl);
    SVP_CUDA_LAUNCH_CHECK("kc_exclude");
  }
  const long long* d_init = L.init_rows;
  for (size_t k = 0; k < init.size(); k += static_cast<size_t>(q_max)) {
    const int q = static_cast<int>(std::min<size_t>(static_cast<size_t>(q_max), init.size() - k));
    const bool last = k + static_cast<size_t>(q) >= init.size();
    init_fn<<<grid, kThreads, init_smem, stream>>>(p, d_init + k, q, static_cast<long long>(k),
                                                    last ? static_cast<int>(t0 & 1) : -1);
    SVP_CUDA_LAUNCH_CHECK("kc_init");
    poll(0);
  }
  if (pruned) {
    pr_ctop_all<Acc><<<1024, 256, 0, stream>>>(p);
    SVP_CUDA_LAUNCH_CHECK("pr_ctop_all");
  }
  // picks in chunks of steps sized to about 50 ms of memory traffic, so that
  // Ctrl-C and progress are served a few times a second
  const double bytes_per_step =
      static_cast<double>(X.rows) * static_cast<double>(X.cols) * static_cast<double>(dtype_size(X.dtype));
  const double est_step_s = bytes_per_step / 3e12 + 4e-6;
  const long long chunk = std::max<long long>(1, std::min<long long>(1 << 16, static_cast<long long>(0.05 / est_step_s)));
    const void* fn = step_fn;
    bool cells_on = use_cells;
    long long scanned_before = 0;
    for (long long t = t0; t < opt.budget; t += chunk) {
      long long t_end = std::min<long long>(opt.budget, t + chunk);
      void* args[] = {&p, &t, &t_end};
      SVP_CUDA(cudaLaunchCooperativeKernel(fn, grid, kThreads, args, step_smem, stream));
      SVP_CUDA_LAUNCH_CHECK("kc_steps");
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
      if (cells_on && opt.fallback_fraction <= 1.0) {
        // does pruning pay? one small synchronisation per chunk while pruned
        KcState h;
        SVP_CUDA(cudaMemcpyAsync(&h, L.state, sizeof(KcState), cudaMemcpyDeviceToHost, stream));
        SVP_CUDA(cudaStreamSynchronize(stream));
        const long long steps = t_end - t;
        const double live = static_cast<double>(X.rows - opt.n_selected - t_end);
        const double frac = static_cast<double>(h.scanned - scanned_before) /
                            std::max(1.0, live * static_cast<double>(steps));
        scanned_before = h.scanned;
        if (frac >= 0.95 || (t_end >= 256 && frac > opt.fallback_fraction)) {
          // hand the state over to the scan: rows back in their own order
          Acc* m_rows = reinterpret_cast<Acc*>(L.band_val);
          Acc* m2_rows = reinterpret_cast<Acc*>(L.band_idx);
          long long* as_rows = L.perm_tmp;
          pr_to_rows<Acc><<<1024, 256, 0, stream>>>(p, m_rows, m2_rows, as_rows);
          SVP_CUDA_LAUNCH_CHECK("pr_to_rows");
          SVP_CUDA(cudaMemcpyAsync(p.m, m_rows, sizeof(Acc) * X.rows, cudaMemcpyDeviceToDevice, stream));
          SVP_CUDA(cudaMemcpyAsync(p.m2, m2_rows, sizeof(Acc) * X.rows, cudaMemcpyDeviceToDevice, stream));
          SVP_CUDA(cudaMemcpyAsync(p.assign, as_rows, sizeof(long long) * X.rows,
                                   cudaMemcpyDeviceToDevice, stream));
          p.n_cells = 0;
          p.perm = nullptr;
          p.where = nullptr;
          cells_on = false;
          fn = reinterpret_cast<const void*>(kc_steps<T, Acc, CPL, VEC>);
          st->fallback_step = t_end;
          // the scan kernel's grid must fit too (it needs less shared memory)
          int per_sm_scan = 0;
          SVP_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm_scan, fn, kThreads, center_bytes));
          if (per_sm_scan * sms < grid)
            throw CudaError("svp_fast internal error: the scan kernel does not fit the pruned grid");
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

template <typename T, typename Acc>
void run_typed(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
               const Layout& L, cudaStream_t stream, int64_t t0, KCenterStats* st) {
  const Geometry g = geometry(X, sizeof(Acc) == 8);
  p.G = g.G;
  p.vec = g.vec;
  if constexpr (sizeof(Acc) == 4 && !std::is_same<T, double>::value) {
    if (g.vec) {
      switch (g.cpl) {
        case 1: return run_steps<T, Acc, 1, true>(X, opt, p, L, stream, t0, st);
        case 2: return run_steps<T, Acc, 2, true>(X, opt, p, L, stream, t0, st);
        case 4: return run_steps<T, Acc, 4, true>(X, opt, p, L, stream, t0, st);
        default: return run_steps<T, Acc, 8, true>(X, opt, p, L, stream, t0, st);
      }
    }
  }
  run_steps<T, Acc, 1, false>(X, opt, p, L, stream, t0, st);
}

template <typename Acc>
void run_acc(const DeviceMatrix& X, const KCenterCudaOptions& opt, const Layout& L,
             cudaStream_t stream, int64_t t0, const ErrorModel& err, const ErrorModel& tie,
             int64_t* picks, double* radii, KCenterStats* st) {
  KcParams<Acc> p = matrix_params<Acc>(X, opt.metric, L.norm64, L.scale);
  p.m = static_cast<Acc*>(L.m);
  p.m2 = static_cast<Acc*>(L.m2);
  p.assign = L.assign;
  p.init_rows = L.init_rows;
  p.n_sel = opt.n_selected;
  p.picks = reinterpret_cast<long long*>(picks);
  p.radii = radii;
  p.budget = opt.budget;
  p.state = L.state;
  p.blockres = L.blockres;
  p.blocksecond = L.blocksecond;
  p.max_blocks = L.max_blocks;
  p.band_idx = L.band_idx;
  p.band_val = L.band_val;
  p.band_flag = L.band_flag;
  p.band_count = L.band_count;
  p.band_any = L.band_any;
  p.err = err;
  p.tie = tie;
  if (opt.method == KCenterMethod::pruned && opt.n_cells > 0) {
    p.n_cells = opt.n_cells;
    p.perm = L.perm;
    p.where = L.where;
    p.cellpos = L.cellpos;
    p.lo = L.lo;
    p.p = L.p;
    p.centroid = L.centroid;
    p.radius = L.radius;
    p.ctop = L.ctop;
    p.m2floor = L.m2floor;
    p.active = L.active;
    p.n_active = L.n_active;
    p.slab_cell = L.slab_cell;
    p.slab_range = L.slab_range;
    p.slab_dc = L.slab_dc;
    p.n_slabs = L.n_slabs;
    p.slab_cap = L.slab_cap;
  }
  // fill, then exclude the initial centers
  const int fill_grid = 1024;
  kc_prepare<Acc><<<fill_grid, 256, 0, stream>>>(p, nullptr, 0);
  SVP_CUDA_LAUNCH_CHECK("kc_prepare");
  switch (X.dtype) {
    case DType::f32: return run_typed<float, Acc>(X, opt, p, L, stream, t0, st);
    case DType::f16: return run_typed<__half, Acc>(X, opt, p, L, stream, t0, st);
    case DType::bf16: return run_typed<__nv_bfloat16, Acc>(X, opt, p, L, stream, t0, st);
    case DType::f64:
      if constexpr (sizeof(Acc) == 8) return run_typed<double, Acc>(X, opt, p, L, stream, t0, st);
      break;
  }
  throw CudaError("svp_fast internal error: float64 input needs float64 arithmetic");
}

}  // namespace

int64_t kcenter_cuda_workspace(const DeviceMatrix& X, const KCenterCudaOptions& opt) {
  DeviceGuard guard(X.device);
  return layout(nullptr, 0, X, opt, max_blocks_bound(X.device)).bytes;
}

void kcenter_cuda(const DeviceMatrix& X, const KCenterCudaOptions& opt, void* workspace,
                  int64_t workspace_bytes, int64_t* picks, double* radii, KCenterStats* stats) {
  const auto t_setup = Clock::now();
  KCenterStats local;
  KCenterStats* st = stats ? stats : &local;
  *st = KCenterStats();
  const char* name = opt.arg_name ? opt.arg_name : "embeddings";
  const int64_t n = X.rows, D = X.cols;
  SVP_CHECK_ARG(n >= 1 && D >= 1, "%s must be a non-empty 2-D array, got shape (%lld, %lld)", name,
                (long long)n, (long long)D);
  SVP_CHECK_ARG(opt.budget >= 0 && opt.budget <= n - opt.n_selected,
                "budget must be in [0, %lld], got %lld", (long long)(n - opt.n_selected),
                (long long)opt.budget);
  {
    std::vector<char> seen(static_cast<size_t>(n), 0);
    for (int64_t j = 0; j < opt.n_selected; ++j) {
      const int64_t s = opt.already_selected[j];
      SVP_CHECK_ARG(s >= 0 && s < n, "already_selected[%lld] = %lld is out of range [0, %lld)",
                    (long long)j, (long long)s, (long long)n);
      SVP_CHECK_ARG(!seen[s], "already_selected holds index %lld twice", (long long)s);
      seen[s] = 1;
    }
  }
  if (opt.n_selected == 0 && opt.budget > 0)
    SVP_CHECK_ARG(opt.start >= 0 && opt.start < n, "start must be in [0, %lld), got %lld",
                  (long long)n, (long long)opt.start);
  SVP_CHECK_ARG(opt.method != KCenterMethod::pruned || (opt.cell_of != nullptr && opt.n_cells >= 1),
                "the pruned method needs a cell partition");
  if (opt.budget == 0) return;

  DeviceGuard guard(X.device);
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(X.stream);
  const int max_blocks = max_blocks_bound(X.device);
  Layout L = layout(workspace, workspace_bytes, X, opt, max_blocks);

  // validation: one pass, one synchronisation
  unsigned long long init_facts[8] = {~0ull, 0ull, ~0ull, 0x7ff0000000000000ull, 0ull, 0, 0, 0};
  SVP_CUDA(cudaMemcpyAsync(L.facts, init_facts, sizeof(init_facts), cudaMemcpyHostToDevice, stream));
  const long long row_bytes = X.row_stride * static_cast<long long>(dtype_size(X.dtype));
  double* norms = opt.metric == Metric::cosine ? L.norm64 : nullptr;
  const int vgrid = static_cast<int>(std::min<long long>(4096, (n + 7) / 8));
  switch (X.dtype) {
    case DType::f32: kc_facts<float><<<vgrid, 256, 0, stream>>>(static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
    case DType::f16: kc_facts<__half><<<vgrid, 256, 0, stream>>>(static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
    case DType::bf16: kc_facts<__nv_bfloat16><<<vgrid, 256, 0, stream>>>(static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
    case DType::f64: kc_facts<double><<<vgrid, 256, 0, stream>>>(static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
  }
  SVP_CUDA_LAUNCH_CHECK("kc_facts");
  unsigned long long facts[8];
  SVP_CUDA(cudaMemcpyAsync(facts, L.facts, sizeof(facts), cudaMemcpyDeviceToHost, stream));
  SVP_CUDA(cudaStreamSynchronize(stream));
  if (facts[0] != ~0ull) {
    const long long r = static_cast<long long>(facts[0] / static_cast<unsigned long long>(D));
    const long long c = static_cast<long long>(facts[0] % static_cast<unsigned long long>(D));
    double v = std::numeric_limits<double>::quiet_NaN();
    {
      unsigned char buf[8] = {0};
      const size_t es = dtype_size(X.dtype);
      SVP_CUDA(cudaMemcpy(buf, static_cast<const char*>(X.data) + r * row_bytes + c * static_cast<long long>(es), es,
                          cudaMemcpyDeviceToHost));
      if (X.dtype == DType::f32) { float f; std::memcpy(&f, buf, 4); v = f; }
      else if (X.dtype == DType::f64) { std::memcpy(&v, buf, 8); }
      else {
        uint16_t h;
        std::memcpy(&h, buf, 2);
        const bool neg = h & 0x8000u;
        const bool nan = X.dtype == DType::f16 ? (h & 0x3ffu) != 0 : (h & 0x7fu) != 0;
        v = nan ? std::numeric_limits<double>::quiet_NaN()
                : (neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
      }
    }
    throw ValueError(format("%s must be finite, got %g at row %lld, column %lld", name, v, r, c));
  }
  double max_abs, min_norm, max_norm;
  std::memcpy(&max_abs, &facts[1], 8);
  std::memcpy(&min_norm, &facts[3], 8);
  std::memcpy(&max_norm, &facts[4], 8);
  if (opt.metric == Metric::cosine)
    SVP_CHECK_ARG(facts[2] == ~0ull,
                  "%s row %lld is all zeros; the cosine metric needs rows of nonzero norm", name,
                  (long long)facts[2]);
  if (X.dtype == DType::f64)
    SVP_CHECK_ARG(max_abs <= 1e150,
                  "%s holds values up to %g, whose squared distances overflow float64; "
                  "rescale the embeddings", name, max_abs);
  const bool f64 = needs_float64(X.dtype, opt.metric, D, max_abs, min_norm, max_norm);
  st->float64_accumulation = f64;

  // the initial centers and, without them, the start pick
  const long long n_init = opt.n_selected > 0 ? opt.n_selected : 1;
  std::vector<long long> init_rows =
      opt.n_selected > 0 ? std::vector<long long>(opt.already_selected, opt.already_selected + n_init)
                         : std::vector<long long>{opt.start};
  SVP_CUDA(cudaMemcpyAsync(L.init_rows, init_rows.data(), sizeof(long long) * n_init,
                           cudaMemcpyHostToDevice, stream));
  KcState s0{};
  s0.prev_radius = std::numeric_limits<double>::infinity();
  int64_t t0 = 0;
  if (opt.n_selected == 0) {
    const long long first = opt.start;
    const double inf = std::numeric_limits<double>::infinity();
    SVP_CUDA(cudaMemcpyAsync(picks, &first, sizeof(long long), cudaMemcpyHostToDevice, stream));
    if (radii) SVP_CUDA(cudaMemcpyAsync(radii, &inf, sizeof(double), cudaMemcpyHostToDevice, stream));
    t0 = 1;
  }
  s0.t = t0;
  SVP_CUDA(cudaMemcpyAsync(L.state, &s0, sizeof(s0), cudaMemcpyHostToDevice, stream));
  // the host copies above are from pageable memory: make sure they landed
  SVP_CUDA(cudaStreamSynchronize(stream));
  st->setup_seconds = std::chrono::duration<double>(Clock::now() - t_setup).count();
  const auto t_select = Clock::now();
  {
    // what a plain scan evaluates, as on the CPU
    long long live = n - n_init, total = n_init * live;
    for (int64_t t = (opt.n_selected > 0 ? 0 : 1); t + 1 < opt.budget; ++t) total += --live;
    // as on the CPU: the start center is applied only when a second pick follows
    st->scan_evals = (opt.n_selected == 0 && opt.budget <= 1) ? 0 : total;
  }
  st->method_used = static_cast<int>(opt.method == KCenterMethod::pruned ? KCenterMethod::pruned
                                                                        : KCenterMethod::scan);
  if (opt.budget > t0) {
    const ErrorModel tie = exact_tie_model(opt.metric, D);
    const ErrorModel err = band_model(error_model(f64, opt.metric, D), tie);
    if (f64)
      run_acc<double>(X, opt, L, stream, t0, err, tie, picks, radii, st);
    else
      run_acc<float>(X, opt, L, stream, t0, err, tie, picks, radii, st);
  }
  st->select_seconds = std::chrono::duration<double>(Clock::now() - t_select).count();
}

}  // namespace cuda
}  // namespace svp
