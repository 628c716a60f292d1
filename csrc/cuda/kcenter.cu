// CUDA k-center, the host driver: argument checks, the workspace layout,
// validation (one pass, one synchronisation), the choice of arithmetic, and
// the hand-off to the picking loop compiled per dtype (kcenter_run.cuh).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <cub/device/device_segmented_sort.cuh>

#include "cublas_runtime.h"
#include "kcenter_layout.cuh"
#include "kcenter_pruned.cuh"

namespace svp {
namespace cuda {

using detail::Layout;
using detail::PickScreen;
using detail::run_batched;
using detail::run_steps;

namespace detail {

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
  launch<pr_hist>(1024, 256, 0, stream, reinterpret_cast<const long long*>(opt.cell_of), n, nc, L.counts, L.bad);
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
  launch<pr_scatter>(1024, 256, 0, stream, reinterpret_cast<const long long*>(opt.cell_of), n, L.lo, L.fill, L.perm_tmp);
  launch<pr_cells<Acc>>(static_cast<int>(nc), 256, 0, stream, p, L.perm_tmp, L.cellpos, L.centroid);
  launch<pr_point_dist<Acc>>(4096, 256, 0, stream, p, L.perm_tmp, L.cellpos, L.centroid, L.p_tmp);
  size_t sb = L.sort_bytes;
  SVP_CUDA(cub::DeviceSegmentedSort::SortPairs(L.sort_temp, sb, L.p_tmp, L.p, L.perm_tmp, L.perm, n,
                                               nc, L.lo, L.lo + 1, stream));
  launch<pr_finish<Acc>>(1024, 256, 0, stream, p, L.where, L.radius, L.m2floor);
  // the host vector lo must outlive its asynchronous copy
  SVP_CUDA(cudaStreamSynchronize(stream));
}

template void setup_cells<float>(const DeviceMatrix&, const KCenterCudaOptions&, KcParams<float>&,
                                 const Layout&, cudaStream_t);
template void setup_cells<double>(const DeviceMatrix&, const KCenterCudaOptions&, KcParams<double>&,
                                  const Layout&, cudaStream_t);

}  // namespace detail

namespace {

using Clock = std::chrono::steady_clock;

// The batched method's candidates per pass: the caller's T, 256 by default,
// never more than the rows.
long long batch_candidates(const KCenterCudaOptions& opt, long long n) {
  const long long T = opt.batch_candidates > 0 ? opt.batch_candidates : 256;
  return std::max<long long>(1, std::min<long long>(T, n));
}

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
  if (opt.method == KCenterMethod::batched) {
    const long long T = batch_candidates(opt, n);
    L.batch_T = T;
    L.keys_out = a.take<double>(n);  // Acc is float64 at most
    L.rows_in = a.take<int>(n);
    L.rows_out = a.take<int>(n);
    L.dmat = a.take<double>(T * T);
    L.bsort_bytes = detail::batched_sort_bytes(n);
    L.bsort_temp = a.take<unsigned char>(static_cast<int64_t>(L.bsort_bytes));
    // the screened product's memory only where it can run (cuBLAS loads): for
    // float32 rows it holds their bf16 parts, 1.5x the rows' own size
    if (opt.batch_product != 1 && X.dtype != DType::f64 &&
        (opt.batch_product == 2 || Cublas::get().available())) {
      const long long cstride = (X.cols + 3) & ~3LL;
      L.sqn = a.take<double>(n);
      // float32 rows multiply as bf16 parts: [xh | xl | xh], 3D columns of 2 bytes
      const bool split = X.dtype == DType::f32;
      const long long K = split ? 3 * X.cols : X.cols;
      const long long kbytes = split ? 2 : static_cast<long long>(dtype_size(X.dtype));
      if (split) L.x3 = a.take<unsigned char>(n * K * kbytes);
      L.praw = a.take<unsigned char>(T * K * kbytes);
      L.pw = a.take<float>(T * cstride);
      L.pscreen = a.take<PickScreen>(T);
      // a chunk of rows of the product: about 256 MB of float32
      L.sbuf_rows = std::max<long long>(1, std::min<long long>(n, (256LL << 20) / (4 * T)));
      L.sbuf = a.take<float>(L.sbuf_rows * T);
    }
  }
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

template <typename T, typename Acc>
void run_typed(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
               const Layout& L, cudaStream_t stream, int64_t t0, KCenterStats* st) {
  const Geometry g = geometry(X, sizeof(Acc) == 8);
  p.G = g.G;
  p.vec = g.vec;
  const bool batched = opt.method == KCenterMethod::batched;
  if constexpr (sizeof(Acc) == 4 && !std::is_same<T, double>::value) {
    if (g.vec) {
      switch (g.cpl) {
        case 1: return batched ? run_batched<T, Acc, 1, true>(X, opt, p, L, stream, t0, st)
                               : run_steps<T, Acc, 1, true>(X, opt, p, L, stream, t0, st);
        case 2: return batched ? run_batched<T, Acc, 2, true>(X, opt, p, L, stream, t0, st)
                               : run_steps<T, Acc, 2, true>(X, opt, p, L, stream, t0, st);
        case 4: return batched ? run_batched<T, Acc, 4, true>(X, opt, p, L, stream, t0, st)
                               : run_steps<T, Acc, 4, true>(X, opt, p, L, stream, t0, st);
        default: return batched ? run_batched<T, Acc, 8, true>(X, opt, p, L, stream, t0, st)
                                : run_steps<T, Acc, 8, true>(X, opt, p, L, stream, t0, st);
      }
    }
  }
  if (batched) return run_batched<T, Acc, 1, false>(X, opt, p, L, stream, t0, st);
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
  launch<kc_prepare<Acc>>(fill_grid, 256, 0, stream, p, nullptr, 0);
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
  SVP_CHECK_ARG(opt.batch_candidates >= 0 && opt.batch_candidates <= 4096 && opt.batch_max_picks >= 0,
                "batch_candidates must be in [1, 4096] on the GPU and batch_max_picks >= 1, got %lld "
                "and %lld", (long long)opt.batch_candidates, (long long)opt.batch_max_picks);
  SVP_CHECK_ARG(opt.method != KCenterMethod::batched || n < (int64_t{1} << 31),
                "the batched method on the GPU takes fewer than 2^31 rows, got %lld; use "
                "method='scan'", (long long)n);
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
    case DType::f32: launch<kc_facts<float>>(vgrid, 256, 0, stream, static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
    case DType::f16: launch<kc_facts<__half>>(vgrid, 256, 0, stream, static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
    case DType::bf16: launch<kc_facts<__nv_bfloat16>>(vgrid, 256, 0, stream, static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
    case DType::f64: launch<kc_facts<double>>(vgrid, 256, 0, stream, static_cast<const char*>(X.data), n, D, row_bytes, norms, L.facts); break;
  }
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
  s0.prev_radius = opt.prev_radius;  // +inf, or the last radius of a run this one continues
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
  st->method_used = static_cast<int>(opt.method == KCenterMethod::lazy ? KCenterMethod::scan
                                                                      : opt.method);
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
