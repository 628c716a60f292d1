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

#include <type_traits>

#include "cublas_runtime.h"
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
  SVP_DYNAMIC_SHARED(unsigned char, smem_raw);
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

// ------------------------------------------------- the pass product, screened
//
// Applying a pass's b picks to every row is an (N x D) by (D x b) product. With
// cuBLAS (cublas_runtime.h) it runs on the tensor cores: S = X P^T in float32,
// then kb_screen bounds each row-pick distance from S and the norms,
//   a = |x s|^2 + |c|^2 - 2 s x.c,   |a - exact| <= 2 e,   e = e_rel |x s| |c| + e_abs,
// and computes the row's exact fast-path distance (row_d2, the scan's kernel)
// only where that distance could be below the row's second minimum m2: a pick
// farther than m2 changes neither m nor m2 nor assign. So the state after the
// pass is bit for bit the one the fused kernel (kc_init) leaves, with a
// fraction of its arithmetic on the SIMT units. Float32 accumulation only.
//
// The product's error, e_rel (run_batched): fp16/bf16 products are exact in
// float32, and any summation order of K terms, truncating or not, errs by at
// most K 2^-23 of sum |x_j c_j| <= |x||c|. float32 rows are split into bf16
// parts, x = xh + xl + r with |r| <= 2^-16 |x| (two roundings to 8 bits), the
// picks likewise, and multiplied as [xh | xl | xh] . [ch | ch | cl] (one bf16
// product of K = 3D on the tensor cores: "3xBF16"), which drops xl cl and the
// remainders: at most 3.1 2^-16 |x||c|, plus the sum's 3D 2^-23 (1.02 |x||c|).
//
// The screen itself runs in float32: the lanes of a row's group test
// different picks, a ballot collects the few that need the exact distance,
// and the whole group computes those. Every float32 rounding of the test
// (a handful, on values at most 3 (|x s|^2 + |c|^2) + m2) is covered by a
// slack of 2^-16 of those magnitudes, far below e (~2^-10 |x s||c| at D = 2048).

// |x_r|^2 in float64 for every row (the norms' one order, warp_row_sumsq64).
template <typename T>
__global__ void kb_sqnorms(KcParams<float> p, double* sqn) {
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long r = warp; r < p.N; r += nwarps) {
    const double ss = warp_row_sumsq64(Elem<T>::dtype, p.X + r * p.row_bytes, p.D);
    if ((threadIdx.x & 31) == 0) sqn[r] = ss;
  }
}

// v = hi + lo + r, hi and lo bf16, |r| <= 2^-16 |v| (v - hi is exact in float32)
__device__ inline void split_bf16(float v, __nv_bfloat16* hi, __nv_bfloat16* lo) {
  const __nv_bfloat16 h = __float2bfloat16_rn(v);
  *hi = h;
  *lo = __float2bfloat16_rn(v - __bfloat162float(h));
}

// float32 rows as [xh | xl | xh] in bf16 (x3: N rows of 3D), once per run.
static __global__ void kb_split_rows(KcParams<float> p, __nv_bfloat16* x3) {
  const long long D = p.D;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < p.N * D; i += stride) {
    const long long r = i / D, j = i - r * D;
    __nv_bfloat16 h, l;
    split_bf16(reinterpret_cast<const float*>(p.X + r * p.row_bytes)[j], &h, &l);
    __nv_bfloat16* out = x3 + r * 3 * D;
    out[j] = h;
    out[D + j] = l;
    out[2 * D + j] = h;
  }
}

// The pass's picks: their raw rows as the product's left factor (praw: b rows
// of K values, [ch | ch | cl] in bf16 for float32 input, the rows as they are
// otherwise), their working-space vectors (pw: b rows of cstride floats, as
// load_center makes centers) and what the screen reads of them. One block
// per pick.
template <typename T>
__global__ void kb_gather(KcParams<float> p, const long long* picks, long long cstride, void* praw,
                          float* pw, PickScreen* ps) {
  __shared__ double s_part[kThreads / 32];
  const int k = blockIdx.x;
  const long long r = picks[k];
  const long long D = p.D;
  const char* row = p.X + r * p.row_bytes;
  const double nrm = p.norm64 ? p.norm64[r] : 1.0;
  double ss = 0.0;
  for (long long j = threadIdx.x; j < D; j += blockDim.x) {
    if constexpr (std::is_same<T, float>::value) {
      __nv_bfloat16 h, l;
      split_bf16(reinterpret_cast<const float*>(row)[j], &h, &l);
      __nv_bfloat16* out = static_cast<__nv_bfloat16*>(praw) + k * 3 * D;
      out[j] = h;
      out[D + j] = h;
      out[2 * D + j] = l;
    } else {
      static_cast<T*>(praw)[k * D + j] = reinterpret_cast<const T*>(row)[j];
    }
    const double v = elem_as_double(p.dtype, row, j);
    const float w = static_cast<float>(p.norm64 ? v / nrm : v);
    pw[k * cstride + j] = w;
    ss += static_cast<double>(w) * w;
  }
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) s_part[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < (blockDim.x >> 5); ++w) t += s_part[w];
    ps[k] = PickScreen{static_cast<float>(t), static_cast<float>(sqrt(t)),
                       static_cast<float>(1.0 / nrm)};
  }
}

// The screen's constants, in float32 and rounded up (run_batched): the
// product's error (e_rel, e_abs) and the band model's E (eps, alpha, beta).
struct ScreenBounds {
  float e_rel, e_abs, eps, alpha, beta;
};

// The pass's b picks applied to rows [r0, r1) from S (their product with the
// rows), in ordinal order: the exact fast-path distance only where the screen
// cannot rule the pick out. A lane tests kUnroll picks at a time, their S
// values loaded first (several loads in flight: the screen streams S, N b
// floats a pass, and must do so at memory speed). The exact distances take
// one chunk per lane and iteration (row_d2<T, 1, VEC>): the same terms in the
// same order as any chunking (each lane adds its chunks l, l + G, ... in
// turn), so the same bits as the fused kernel's, with fewer registers for the
// rare path.
constexpr int kScreenUnroll = 4;

template <typename T, int CPL, bool VEC>
__global__ void __launch_bounds__(kThreads)
    kb_screen(KcParams<float> p, const float* S, long long r0, long long r1, int b,
              const float* pw, long long cstride, const PickScreen* ps, const double* sqn,
              long long ord0, ScreenBounds bd) {
  const int lane = threadIdx.x & 31;
  const int G = p.G;
  const int l = lane & (G - 1);
  const int slot = lane / G;
  const int rpw = 32 / G;
  const unsigned mask = G == 32 ? 0xffffffffu : (((1u << G) - 1u) << (slot * G));
  const long long gwarp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  long long evals = 0;
  for (long long qb = r0 + gwarp * rpw; qb < r1; qb += nwarps * rpw) {
    const long long r = qb + slot;
    if (r >= r1) continue;  // the whole group skips together
    float mr = p.m[r];
    if (mr < 0.f) continue;  // a center or a pick
    // every lane of the group keeps the row's state (the same updates in each)
    float m2v = p.m2[r];
    long long as = p.assign[r];
    const float s = p.scale ? p.scale[r] : 1.f;
    const double xs64 = sqrt(static_cast<double>(s) * s * sqn[r]);  // |x s|, once per row
    const float xs = static_cast<float>(xs64), xs2 = static_cast<float>(xs64 * xs64);
    const char* row = p.X + r * p.row_bytes;
    const float* srow = S + (r - r0) * b;
    bool changed = false;
    for (int kb0 = 0; kb0 < b; kb0 += kScreenUnroll * G) {
      float sv[kScreenUnroll];
#pragma unroll
      for (int u = 0; u < kScreenUnroll; ++u) {  // all loads first
        const int k = kb0 + u * G + l;
        sv[u] = k < b ? srow[k] : 0.f;
      }
      bool need[kScreenUnroll];
#pragma unroll
      for (int u = 0; u < kScreenUnroll; ++u) {
        const int k = kb0 + u * G + l;
        need[u] = false;
        if (k < b) {
          const PickScreen c = ps[k];
          const float dot = sv[u] * s * (p.norm64 ? c.inv_norm : 1.f);
          const float a = (xs2 + c.c2) - 2.f * dot;
          const float e = fmaf(bd.e_rel, xs * c.cn, bd.e_abs);
          const float hi = fmaxf(a + 2.f * e, 0.f);
          const float E = fmaf(bd.eps, hi, fmaf(bd.alpha, sqrtf(hi), bd.beta));
          const float slack = 1.52587890625e-05f /* 2^-16 */ * (3.f * (xs2 + c.c2) + m2v);
          // the fast-path distance is provably >= m2: nothing would change
          // (m2 only falls within the chunk: an older m2 is a safe test)
          need[u] = !(a - 2.f * e - 2.f * E - slack > m2v);
        }
      }
#pragma unroll
      for (int u = 0; u < kScreenUnroll; ++u) {  // in ordinal order
        const int kb = kb0 + u * G;
        if (kb >= b) break;  // (the group agrees: kb is the group's)
        unsigned todo = __ballot_sync(mask, need[u]);
        todo = G == 32 ? todo : (todo >> (slot * G)) & ((1u << G) - 1u);
        while (todo) {
          const int j = __ffs(static_cast<int>(todo)) - 1;
          todo &= todo - 1;
          const float d = row_d2<T, 1, VEC>(row, p.D, G, l, mask, s, pw + (kb + j) * cstride);
          ++evals;
          changed |= take_center_distance(d, ord0 + kb + j, mr, m2v, as);
        }
      }
    }
    if (l == 0 && changed) {
      p.m[r] = mr;
      p.m2[r] = m2v;
      p.assign[r] = as;
    }
  }
  // (every lane of a group counted its row's exact distances)
  unsigned long long e = l == 0 ? static_cast<unsigned long long>(evals) : 0ull;
  for (int off = 16; off > 0; off >>= 1) e += __shfl_xor_sync(0xffffffffu, e, off);
  if (lane == 0 && e) atomicAdd(reinterpret_cast<unsigned long long*>(&p.state->distance_evals), e);
}

// The product's operand type: float32 rows multiply as their bf16 parts.
template <typename T>
constexpr cudaDataType_t cublas_type() {
  if constexpr (std::is_same<T, __half>::value) return CUDA_R_16F;
  return CUDA_R_16BF;
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
  constexpr auto apply_fn = kc_init<T, Acc, CPL, VEC>;
  constexpr auto pairs_fn = kb_pairs<T, Acc, CPL, VEC>;
  const KernelFit fit(X.device, X.cols);
  fit.allow<apply_fn>(apply_smem, "initial-centers");
  fit.allow<pairs_fn>(center_bytes, "candidate-pairs");
  const int apply_grid =
      std::min(L.max_blocks, fit.blocks_per_sm<apply_fn>(kThreads, apply_smem, "initial-centers") * fit.sms);
  const long long cand_max = L.batch_T;  // candidates per pass
  const int accept_grid = batched_accept_grid<Acc>(fit, static_cast<int>(cand_max), L.max_blocks);
  p.max_blocks = L.max_blocks;

  // The pass product on the tensor cores (cuBLAS, screened) where it can run:
  // float32 accumulation, 16-bit or float32 rows at a positive stride, and
  // cuBLAS in the process; otherwise the fused kernel. Same state either way.
  bool screened = false;
  if constexpr (sizeof(Acc) == 4 && !std::is_same<T, double>::value) {
    screened = opt.batch_product != 1 && X.row_stride >= X.cols && L.sbuf != nullptr &&
               Cublas::get().available();
    if (opt.batch_product == 2 && !screened)
      throw CudaError("svp_fast: batch_product='cublas' cannot run here: " +
                      (Cublas::get().available() ? std::string("the input's layout or arithmetic does not allow it")
                                                 : Cublas::get().why_not()));
  }
  const long long n = X.rows;
  const long long cstride = (X.cols + 3) & ~3LL;
  const int screen_grid = std::min(L.max_blocks, 4 * fit.sms);
  // float32 rows multiply as bf16 parts (3xBF16): K = 3D columns of x3
  constexpr bool split = std::is_same<T, float>::value;
  const long long K = split ? 3 * X.cols : X.cols;
  if (screened) {
    if constexpr (sizeof(Acc) == 4 && !std::is_same<T, double>::value) {
      launch<kb_sqnorms<T>>(std::min<long long>(4096, (n + 7) / 8), 256, 0, stream, p, L.sqn);
      if constexpr (split)
        launch<kb_split_rows>(static_cast<int>(std::min<long long>(4096, (n * X.cols + 255) / 256)), 256, 0,
                              stream, p, static_cast<__nv_bfloat16*>(L.x3));
    }
  }
  // e_rel: twice the product's bound (see kb_screen: K 2^-23 of the sum, and
  // for float32 rows the dropped parts of the split), plus an allowance for
  // the cosine scaling; the band model's E rounded up for the float32 test
  const double dot_rel = split ? 3.1 * 1.52587890625e-05 /* 2^-16 */ +
                                     1.02 * static_cast<double>(K) * 1.1920928955078125e-07
                               : static_cast<double>(K) * 1.1920928955078125e-07;
  const double e_rel = 2.0 * dot_rel + (opt.metric == Metric::cosine ? 1.52587890625e-05 : 2.4e-7);
  const auto up = [](double v) {  // a float at least v (1e-6 above: margin)
    const double w = v * (1.0 + 1e-6);
    float f = static_cast<float>(w);
    return static_cast<double>(f) < w ? std::nextafter(f, INFINITY) : f;
  };
  const ScreenBounds bounds{up(e_rel), up(1e-30), up(p.err.eps), up(p.err.alpha), up(p.err.beta)};
  auto product = [&](const long long* rows, long long count, long long ord0) {
    if constexpr (sizeof(Acc) == 4 && !std::is_same<T, double>::value) {
      launch<kb_gather<T>>(static_cast<int>(count), kThreads, 0, stream, p, rows, cstride, L.praw, L.pw,
                           L.pscreen);
      const int b = static_cast<int>(count);
      const char* rows_k = split ? static_cast<const char*>(L.x3) : p.X;
      const long long row_bytes_k = split ? K * 2 : p.row_bytes;
      const long long ld_k = split ? K : X.row_stride;
      for (long long r0 = 0; r0 < n; r0 += L.sbuf_rows) {
        const long long r1 = std::min<long long>(n, r0 + L.sbuf_rows);
        Cublas::get().gemm_tn(stream, b, static_cast<int>(r1 - r0), static_cast<int>(K), L.praw,
                              static_cast<int>(K), rows_k + r0 * row_bytes_k, static_cast<int>(ld_k),
                              cublas_type<T>(), L.sbuf, b);
        launch<kb_screen<T, CPL, VEC>>(screen_grid, kThreads, 0, stream, p, L.sbuf, r0, r1, b, L.pw, cstride,
                                       L.pscreen, L.sqn, ord0, bounds);
      }
    }
  };
  auto apply = [&](const long long* rows, long long count, long long ord0, bool first) {
    launch<kc_exclude<Acc>>(static_cast<int>(std::max<long long>(1, std::min<long long>(1024, (count + 255) / 256))), 256, 0, stream, p, rows, count);
    // the first application meets m2 = +inf everywhere: nothing to screen
    if (screened && !first && count > 1) return product(rows, count, ord0);
    for (long long k = 0; k < count; k += q_max) {
      const int q = static_cast<int>(std::min<long long>(q_max, count - k));
      launch<apply_fn>(apply_grid, kThreads, apply_smem, stream, p, rows + k, q, ord0 + k, -1);
    }
  };

  // the one read per pass lands in pinned memory
  struct PinnedState {
    KcState* h = nullptr;
    PinnedState() { SVP_CUDA(cudaMallocHost(&h, sizeof(KcState))); }
    ~PinnedState() { cudaFreeHost(h); }
  } pinned;

  Poller poll(opt.progress, opt.poll_interval);
  const long long budget = opt.budget;
  const long long cap = opt.batch_max_picks > 0 ? opt.batch_max_picks : cand_max;
  long long passes = 0, pair_evals = 0;
  try {
    // the initial centers (already_selected, or the start pick)
    const long long n_init = opt.n_selected > 0 ? opt.n_selected : 1;
    batched_init_rows(L, n, stream);
    apply(L.init_rows, n_init, 0, true);
    poll(0);
    long long t = t0;
    while (t < budget) {
      const long long live = n - opt.n_selected - t;
      const int nc = static_cast<int>(std::min<long long>(cand_max, live));
      batched_sort<Acc>(p, L, stream);
      if (nc > 1) {
        launch<pairs_fn>(nc, kThreads, center_bytes, stream, p, L.rows_out, nc, static_cast<Acc*>(L.dmat),
                                                         static_cast<int>(cand_max));
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
        apply(reinterpret_cast<const long long*>(p.picks) + t, t_next - t, opt.n_selected + t, false);
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
  st->product = screened ? 1 : 0;
}

}  // namespace detail
}  // namespace cuda
}  // namespace svp
