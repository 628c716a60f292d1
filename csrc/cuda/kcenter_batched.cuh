// The batched picking loop of CUDA k-center (see kcenter_layout.cuh,
// run_batched): the dtype-dependent kernels and the host loop. Included by the
// translation units CMake generates from kcenter_instance.cu.in, next to
// kcenter_run.cuh.
//
// A pass, all on the caller's stream:
//   1. batched_sort: the min-distances sorted best first (CUB radix sort,
//      stable, so ties keep the lower row first): the T best live rows are
//      the candidates, the (T+1)-th value bounds every other point (B);
//   2. kb_pairs: the T x T distances of the candidates to each other (the
//      scan's row kernel, so within the same error model as every value);
//   3. batched_accept: the certified sequential acceptance (a cooperative
//      kernel; the common path is computed by every block on its own copy of
//      the candidates, float64 near-ties use the whole grid);
//   4. one read of the run state (how far the pass got: its picks are on the
//      device, only the count comes to the host);
//   5. kc_init: the pass's picks applied to every row (q per launch).
// The picks are those of the plain scan (the CPU's batched driver,
// csrc/cpu/kcenter.cpp, is the reference twin).
#pragma once

#include <algorithm>
#include <vector>

#include "kcenter_layout.cuh"
#include "kcenter_run.cuh"  // kc_exclude, kc_init: the apply kernels
#include "kcenter_steps.cuh"

namespace svp {
namespace cuda {
namespace detail {

// dmat[i * ld + j]: squared distance of candidate row i to candidate j taken
// as a center (its working-space vector, as apply_centers uses centers). One
// block per center j; G lanes per row as in apply_centers.
template <typename T, typename Acc, int CPL, bool VEC>
__global__ void __launch_bounds__(kThreads) kb_pairs(KcParams<Acc> p, const int* cand, int nc,
                                                     Acc* dmat, int ld) {
  extern __shared__ unsigned char smem_raw[];
  Acc* cs = reinterpret_cast<Acc*>(smem_raw);
  const int j = blockIdx.x;
  load_center(p, cand[j], cs);
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int G = p.G;
  const int l = lane & (G - 1);
  const int slot = lane / G;
  const int rpw = 32 / G;
  const unsigned mask = G == 32 ? 0xffffffffu : (((1u << G) - 1u) << (slot * G));
  const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int ib = warp * rpw; ib < nc; ib += nwarps * rpw) {
    const int i = ib + slot;
    if (i >= nc) continue;  // the whole row group skips together
    const long long r = cand[i];
    const Acc s = p.scale ? p.scale[r] : Acc(1);
    const Acc d = row_dist<T, Acc, CPL, VEC>(p.X + r * p.row_bytes, p.D, G, l, mask, s, cs);
    if (l == 0) dmat[static_cast<long long>(i) * ld + j] = d;
  }
}

template <typename T, typename Acc, int CPL, bool VEC>
void run_batched(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
                 const Layout& L, cudaStream_t stream, int64_t t0, KCenterStats* st) {
  const size_t center_bytes = static_cast<size_t>(X.cols) * sizeof(Acc);
  const size_t center_stride_bytes = static_cast<size_t>((X.cols + 3) & ~3LL) * sizeof(Acc);
  // centers per apply launch (they share each row's load)
  const int q_max = static_cast<int>(
      std::max<size_t>(1, std::min<size_t>(16, (96u << 10) / center_stride_bytes)));
  const size_t apply_smem = center_stride_bytes * static_cast<size_t>(q_max);
  auto apply_fn = kc_init<T, Acc, CPL, VEC>;
  auto pairs_fn = kb_pairs<T, Acc, CPL, VEC>;
  const KernelFit fit(X.device, X.cols);
  fit.allow(reinterpret_cast<const void*>(apply_fn), apply_smem, "initial-centers");
  fit.allow(reinterpret_cast<const void*>(pairs_fn), center_bytes, "candidate-pairs");
  const int apply_grid =
      std::min(L.max_blocks, fit.blocks_per_sm(reinterpret_cast<const void*>(apply_fn), kThreads,
                                               apply_smem, "initial-centers") * fit.sms);
  const long long cand_max = L.batch_T;  // candidates per pass
  const int accept_grid = batched_accept_grid<Acc>(fit, static_cast<int>(cand_max), L.max_blocks);
  p.max_blocks = L.max_blocks;

  auto apply = [&](const long long* rows, long long count, long long ord0) {
    kc_exclude<Acc><<<static_cast<int>(std::max<long long>(1, std::min<long long>(1024, (count + 255) / 256))),
                      256, 0, stream>>>(p, rows, count);
    SVP_CUDA_LAUNCH_CHECK("kc_exclude");
    for (long long k = 0; k < count; k += q_max) {
      const int q = static_cast<int>(std::min<long long>(q_max, count - k));
      apply_fn<<<apply_grid, kThreads, apply_smem, stream>>>(p, rows + k, q, ord0 + k, -1);
      SVP_CUDA_LAUNCH_CHECK("kc_init");
    }
  };

  // the one read per pass lands in pinned memory
  struct PinnedState {
    KcState* h = nullptr;
    PinnedState() { SVP_CUDA(cudaMallocHost(&h, sizeof(KcState))); }
    ~PinnedState() { cudaFreeHost(h); }
  } pinned;

  Poller poll(opt.progress, opt.poll_interval);
  const long long n = X.rows, budget = opt.budget;
  const long long cap = opt.batch_max_picks > 0 ? opt.batch_max_picks : cand_max;
  long long passes = 0, pair_evals = 0;
  try {
    // the initial centers (already_selected, or the start pick)
    const long long n_init = opt.n_selected > 0 ? opt.n_selected : 1;
    batched_init_rows(L, n, stream);
    apply(L.init_rows, n_init, 0);
    poll(0);
    long long t = t0;
    while (t < budget) {
      const long long live = n - opt.n_selected - t;
      const int nc = static_cast<int>(std::min<long long>(cand_max, live));
      batched_sort<Acc>(p, L, stream);
      if (nc > 1) {
        pairs_fn<<<nc, kThreads, center_bytes, stream>>>(p, L.rows_out, nc, static_cast<Acc*>(L.dmat),
                                                         static_cast<int>(cand_max));
        SVP_CUDA_LAUNCH_CHECK("kb_pairs");
        pair_evals += static_cast<long long>(nc) * nc;
      }
      const long long t_cap = std::min<long long>(budget, t + cap);
      batched_accept<Acc>(p, L, nc, live, t_cap, accept_grid, stream);
      // the one read per pass: how far the pass got
      SVP_CUDA(cudaMemcpyAsync(pinned.h, L.state, sizeof(KcState), cudaMemcpyDeviceToHost, stream));
      SVP_CUDA(cudaStreamSynchronize(stream));
      const long long t_next = pinned.h->t;
      if (t_next <= t)
        throw CudaError("svp_fast internal error: a batched pass made no pick");
      ++passes;
      if (t_next < budget)
        apply(reinterpret_cast<const long long*>(p.picks) + t, t_next - t, opt.n_selected + t);
      t = t_next;
      poll(t);
    }
    SVP_CUDA(cudaStreamSynchronize(stream));
  } catch (...) {
    cudaStreamSynchronize(stream);  // nothing may still write into the caller's buffers
    throw;
  }
  poll(opt.budget, nullptr, true);
  KcState h;
  SVP_CUDA(cudaMemcpy(&h, L.state, sizeof(KcState), cudaMemcpyDeviceToHost));
  st->method_used = static_cast<int>(KCenterMethod::batched);
  st->ambiguous_steps = h.ambiguous_steps;
  st->exact_distance_evals = h.exact_evals;
  st->distance_evals = h.distance_evals + pair_evals;
  st->candidate_evals = pair_evals;
  st->passes = passes;
}

}  // namespace detail
}  // namespace cuda
}  // namespace svp
