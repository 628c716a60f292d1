// The CUDA k-center shard for distributed k-center: the same fused update as
// the single-GPU kernels (apply_centers), driven by the host one step (the
// stepwise protocol) or one pass (the batched protocol: the offer of the T
// best candidates, then the pass's picks applied at once) at a time, because
// every step or pass waits for the other ranks anyway.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kcenter_steps.cuh"
#include "launch.cuh"
#include "svp/exactness.h"
#include "svp/shard.h"

namespace svp {
namespace cuda {

namespace {

// Centers in shared memory start 16-byte aligned (apply_centers' float4 reads).
__host__ __device__ inline long long center_stride(long long D) { return (D + 3) & ~3LL; }

// The float64 norm of one raw row (X's dtype, on the device), in the order
// kc_facts computed its owner's norm (warp_row_sumsq64): the first warp
// computes it, every thread of the block gets it (every thread must call).
__device__ double block_row_norm64(DType dtype, const char* raw, long long D) {
  __shared__ double s_norm;
  if (threadIdx.x < 32) {
    const double ss = warp_row_sumsq64(dtype, raw, D);
    if (threadIdx.x == 0) s_norm = sqrt(ss);
  }
  __syncthreads();
  return s_norm;
}

// The center (raw row of X's dtype, on the device) in the working space,
// into shared memory: float64 norm computed by the block for cosine.
template <typename Acc>
__device__ void load_center_raw(const KcParams<Acc>& p, const char* raw, double known_norm,
                                Acc* out) {
  double nrm = 1.0;
  if (p.norm64) nrm = known_norm > 0 ? known_norm : block_row_norm64(p.dtype, raw, p.D);
  for (long long j = threadIdx.x; j < p.D; j += blockDim.x) {
    const double v = elem_as_double(p.dtype, raw, j);
    out[j] = static_cast<Acc>(p.norm64 ? v / nrm : v);
  }
  __syncthreads();
}

// Apply q centers (raw rows back to back, row_bytes apart, ordinals ord0..)
// to every live row, leaving the block candidates for top2.
template <typename T, typename Acc, int CPL, bool VEC>
__global__ void __launch_bounds__(kThreads) shard_apply(KcParams<Acc> p, const char* raw,
                                                        long long row_bytes, int q,
                                                        long long ord0,
                                                        unsigned long long* evals_out) {
  SVP_DYNAMIC_SHARED(unsigned char, smem_raw);
  Acc* cs = reinterpret_cast<Acc*>(smem_raw);
  __shared__ Top4 scratch[kThreads / 32];
  const long long cstride = center_stride(p.D);
  for (int k = 0; k < q; ++k) load_center_raw(p, raw + k * row_bytes, -1.0, cs + k * cstride);
  Top2 mine;
  top2_clear(mine);
  long long evals = 0;
  apply_centers<T, Acc, CPL, VEC>(p, cs, cstride, q, ord0, -1, mine, evals);
  write_block_candidates(mine, p.blockres, p.blocksecond, scratch);
  unsigned long long e = static_cast<unsigned long long>(evals);
  for (int off = 16; off > 0; off >>= 1) e += __shfl_xor_sync(0xffffffffu, e, off);
  if ((threadIdx.x & 31) == 0 && e) atomicAdd(evals_out, e);
}

// One block: the shard's two best candidates from the block candidates.
__global__ void __launch_bounds__(kThreads) shard_reduce(const Top4* res, int nblocks, double* out) {
  __shared__ Top4 scratch[kThreads / 32];
  const Top4 g = global_top4(res, nblocks, scratch);
  if (threadIdx.x == 0) {
    out[0] = g.v[0];
    out[1] = __longlong_as_double(g.i[0]);
    out[2] = g.v[1];
    out[3] = __longlong_as_double(g.i[1]);
  }
}

template <typename Acc>
__global__ void shard_exclude(Acc* m, long long r) {
  m[r] = Acc(-1);
}

template <typename Acc>
__global__ void shard_exclude_rows(Acc* m, const long long* rows, long long count) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long k = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; k < count; k += stride)
    m[rows[k]] = Acc(-1);
}

__global__ void shard_iota(long long* out, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n; i += stride)
    out[i] = i;
}

// The offer (svp/shard.h, OfferLayout) from the live rows sorted by value,
// descending (a stable sort of rows in ascending order: equal values keep
// the lower row first; centers and picks, -1, come last). Block b writes
// records and rows b, b + gridDim.x, ...; the message was zeroed.
template <typename Acc>
__global__ void shard_offer_write(KcParams<Acc> p, const Acc* sorted, const long long* order,
                                  long long T, long long global_offset, long long head,
                                  long long rb, char* msg) {
  const long long n = p.N;
  const long long lim = T < n ? T : n;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    // live candidates among the first lim: the first negative value ends them
    long long lo = 0, hi = lim;
    while (lo < hi) {
      const long long mid = (lo + hi) / 2;
      if (sorted[mid] >= Acc(0)) lo = mid + 1; else hi = mid;
    }
    const long long count = lo;
    const double bound = (count == T && T < n && sorted[T] >= Acc(0)) ? static_cast<double>(sorted[T]) : -1.0;
    reinterpret_cast<long long*>(msg)[0] = count;
    reinterpret_cast<double*>(msg)[1] = bound;
  }
  for (long long j = blockIdx.x; j < T; j += gridDim.x) {
    const bool live = j < lim && sorted[j] >= Acc(0);
    const long long r = live ? order[j] : -1;
    if (threadIdx.x == 0) {
      double* rec = reinterpret_cast<double*>(msg + 16 + 32 * j);
      long long* irec = reinterpret_cast<long long*>(rec);
      rec[0] = live ? static_cast<double>(sorted[j]) : -1.0;
      rec[1] = live ? static_cast<double>(p.m2[r]) : -1.0;
      irec[2] = live ? p.assign[r] : -1;
      irec[3] = live ? global_offset + r : -1;
    }
    if (live) {
      const char* src = p.X + r * p.row_bytes;
      char* dst = msg + head + j * rb;
      for (long long b = threadIdx.x; b < rb; b += blockDim.x) dst[b] = src[b];
    }
  }
}

template <typename Acc>
__global__ void shard_band(const Acc* m, long long n, double thr, long long* idx, double* val,
                           int* count) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long r = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; r < n; r += stride) {
    const double v = static_cast<double>(m[r]);
    if (v >= 0.0 && v >= thr) {
      const int j = atomicAdd(count, 1);
      idx[j] = r;
      val[j] = v;
    }
  }
}

// One warp per given row: float64 squared distance to y, the minimum by atomicMin.
template <typename Acc>
__global__ void shard_exact_min(KcParams<Acc> p, const char* raw_y, const long long* rows,
                                long long count, unsigned long long* best) {
  // y's norm, as the owner computed it (float64 sum of squares)
  const double ny = p.norm64 ? block_row_norm64(p.dtype, raw_y, p.D) : 1.0;
  const int lane = threadIdx.x & 31;
  const long long warp = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) >> 5;
  const long long nwarps = (static_cast<long long>(gridDim.x) * blockDim.x) >> 5;
  for (long long k = warp; k < count; k += nwarps) {
    const double acc = exact_d2_warp(p, raw_y, ny, rows[k]);
    if (lane == 0) atomicMin(best, static_cast<unsigned long long>(__double_as_longlong(acc)));
  }
}

template <typename T>
void* device_alloc(size_t count) {
  void* p = nullptr;
  const size_t bytes = std::max<size_t>(1, count * sizeof(T));
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw CudaError(format("CUDA out of memory: the k-center shard asked for %zu bytes", bytes));
  }
  if (e != cudaSuccess) throw_cuda(e, "cudaMalloc", __FILE__, __LINE__);
  return p;
}

}  // namespace

struct KCenterShardCuda::Impl {
  DeviceMatrix X;
  Metric metric;
  bool f64;
  int grid = 0;
  Geometry geo;
  ErrorModel err, tie;
  std::vector<void*> owned;
  void* m = nullptr;
  void* m2 = nullptr;
  long long* assign = nullptr;
  void* scale = nullptr;
  double* norm64 = nullptr;
  Top4* blockres = nullptr;
  double* blocksecond = nullptr;
  double* result = nullptr;           // [4] top-2
  long long* band_idx = nullptr;      // [N]
  double* band_val = nullptr;         // [N]
  int* band_count = nullptr;
  unsigned long long* counters = nullptr;  // [0] distance evals, [1] exact min
  long long* rows_buf = nullptr;
  long long rows_cap = 0;
  long long ordinal = 0;
  // the batched protocol's offer: a stable descending sort of (value, row)
  // per pass, buffers made on the first offer
  void* sort_keys = nullptr;        // [N] Acc, sorted values
  long long* sort_rows_in = nullptr;   // [N] 0 .. N-1
  long long* sort_rows = nullptr;      // [N] rows in sorted order
  void* sort_temp = nullptr;
  size_t sort_temp_bytes = 0;

  template <typename T>
  T* take(size_t count) {
    void* p = device_alloc<T>(count);
    owned.push_back(p);
    return static_cast<T*>(p);
  }
  ~Impl() {
    for (void* p : owned) cudaFree(p);
  }

  template <typename Acc>
  KcParams<Acc> params() const {
    KcParams<Acc> p = matrix_params<Acc>(X, metric, norm64, scale);
    p.m = static_cast<Acc*>(m);
    p.m2 = static_cast<Acc*>(m2);
    p.assign = assign;
    p.blockres = blockres;
    p.blocksecond = blocksecond;
    p.max_blocks = grid;
    p.err = err;
    p.tie = tie;
    p.G = geo.G;
    p.vec = geo.vec;
    return p;
  }

  long long raw_row_bytes() const { return X.cols * static_cast<long long>(dtype_size(X.dtype)); }

  // q centers (raw rows back to back on the device) in launches of at most
  // as many as shared memory holds (16 at most: they share each row's load);
  // every launch leaves the block candidates, the last one's are current
  template <typename T, typename Acc, int CPL, bool VEC>
  void apply(const char* raw, long long q, long long ord0) {
    const size_t stride_bytes = static_cast<size_t>(center_stride(X.cols)) * sizeof(Acc);
    int optin = 0;
    SVP_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, X.device));
    constexpr auto kernel = shard_apply<T, Acc, CPL, VEC>;
    const size_t room = static_cast<size_t>(std::max<long long>(
        0, optin - static_cast<long long>(static_shared_bytes<kernel>())));
    const long long q_max = std::max<long long>(1, std::min<long long>(16, static_cast<long long>(room / stride_bytes)));
    const long long rb = raw_row_bytes();
    for (long long k = 0; k < q; k += q_max) {
      const int qb = static_cast<int>(std::min(q_max, q - k));
      const size_t smem = stride_bytes * static_cast<size_t>(qb);
      allow_dynamic_smem<kernel>(smem);
      launch<kernel>(grid, kThreads, smem, 0, params<Acc>(), raw + k * rb, rb, qb, ord0 + k, counters);
    }
  }

  template <typename T, typename Acc>
  void apply_typed(const char* raw, long long q, long long ord0) {
    if constexpr (sizeof(Acc) == 4 && !std::is_same<T, double>::value) {
      if (geo.vec) {
        switch (geo.cpl) {
          case 1: return apply<T, Acc, 1, true>(raw, q, ord0);
          case 2: return apply<T, Acc, 2, true>(raw, q, ord0);
          case 4: return apply<T, Acc, 4, true>(raw, q, ord0);
          default: return apply<T, Acc, 8, true>(raw, q, ord0);
        }
      }
    }
    apply<T, Acc, 1, false>(raw, q, ord0);
  }

  template <typename Acc>
  void apply_acc(const char* raw, long long q, long long ord0) {
    switch (X.dtype) {
      case DType::f32: return apply_typed<float, Acc>(raw, q, ord0);
      case DType::f16: return apply_typed<__half, Acc>(raw, q, ord0);
      case DType::bf16: return apply_typed<__nv_bfloat16, Acc>(raw, q, ord0);
      case DType::f64:
        if constexpr (sizeof(Acc) == 8) return apply_typed<double, Acc>(raw, q, ord0);
        break;
    }
    throw CudaError("svp_fast internal error: float64 input needs float64 arithmetic");
  }

  // q centers: apply, then the shard's best two from the block candidates
  void apply_centers_q(const char* raw, long long q) {
    const long long ord0 = ordinal;
    ordinal += q;
    if (X.rows == 0 || q == 0) return;
    if (f64)
      apply_acc<double>(raw, q, ord0);
    else
      apply_acc<float>(raw, q, ord0);
    launch<shard_reduce>(1, kThreads, 0, 0, blockres, grid, result);
  }

  template <typename Acc>
  void offer_typed(long long T, long long global_offset, char* msg) {
    const long long n = X.rows;
    if (!sort_keys) {
      sort_keys = take<Acc>(n);
      sort_rows_in = take<long long>(n);
      sort_rows = take<long long>(n);
      launch<shard_iota>(static_cast<int>(std::min<long long>(1024, (n + 255) / 256)), 256, 0, 0, sort_rows_in, n);
      SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(
          nullptr, sort_temp_bytes, static_cast<const Acc*>(m), static_cast<Acc*>(sort_keys),
          sort_rows_in, sort_rows, static_cast<int>(n), 0, static_cast<int>(sizeof(Acc) * 8), cudaStream_t(0)));
      sort_temp = take<unsigned char>(sort_temp_bytes);
    }
    size_t tb = sort_temp_bytes;
    SVP_CUDA(cub::DeviceRadixSort::SortPairsDescending(
        sort_temp, tb, static_cast<const Acc*>(m), static_cast<Acc*>(sort_keys), sort_rows_in,
        sort_rows, static_cast<int>(n), 0, static_cast<int>(sizeof(Acc) * 8), cudaStream_t(0)));
    const OfferLayout L{T, raw_row_bytes()};
    const int g = static_cast<int>(std::max<long long>(1, std::min<long long>(4096, T)));
    launch<shard_offer_write<Acc>>(g, 128, 0, 0, params<Acc>(), static_cast<const Acc*>(sort_keys), sort_rows,
                                       T, global_offset, L.head_bytes(), L.row_bytes, msg);
  }
};

KCenterShardCuda::KCenterShardCuda(const DeviceMatrix& X, Metric metric, bool float64,
                                   const char* arg_name)
    : impl_(new Impl) {
  const char* name = arg_name ? arg_name : "embeddings";
  Impl& s = *impl_;
  s.X = X;
  s.metric = metric;
  s.f64 = float64;
  SVP_CHECK_ARG(X.rows >= 0 && X.cols >= 1, "%s must be a 2-D array with D >= 1, got shape (%lld, %lld)",
                name, (long long)X.rows, (long long)X.cols);
  SVP_CHECK_ARG(float64 || X.dtype != DType::f64, "float64 input needs float64 arithmetic (float64=True)");
  s.tie = exact_tie_model(metric, X.cols);
  s.err = band_model(error_model(float64, metric, X.cols), s.tie);
  if (X.rows == 0) return;
  DeviceGuard guard(X.device);
  const long long n = X.rows;
  s.geo = geometry(X, float64);
  int sms = 0;
  SVP_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, X.device));
  s.grid = static_cast<int>(std::max<long long>(1, std::min<long long>(static_cast<long long>(sms) * 4, (n + 7) / 8)));
  const size_t acc = float64 ? 8 : 4;
  s.m = s.take<unsigned char>(n * acc);
  s.m2 = s.take<unsigned char>(n * acc);
  s.assign = s.take<long long>(n);
  s.scale = s.take<unsigned char>(n * acc);
  s.norm64 = s.take<double>(n);
  s.blockres = s.take<Top4>(s.grid);
  s.blocksecond = s.take<double>(s.grid);
  s.result = s.take<double>(4);
  s.band_idx = s.take<long long>(n);
  s.band_val = s.take<double>(n);
  s.band_count = s.take<int>(1);
  s.counters = s.take<unsigned long long>(2);
  unsigned long long* facts = s.take<unsigned long long>(8);
  SVP_CUDA(cudaMemset(s.counters, 0, 2 * sizeof(unsigned long long)));
  // validation: one pass, as the single-GPU path
  const unsigned long long init_facts[8] = {~0ull, 0ull, ~0ull, 0x7ff0000000000000ull, 0ull, 0, 0, 0};
  SVP_CUDA(cudaMemcpy(facts, init_facts, sizeof(init_facts), cudaMemcpyHostToDevice));
  const long long row_bytes = X.row_stride * static_cast<long long>(dtype_size(X.dtype));
  const int vgrid = static_cast<int>(std::min<long long>(4096, (n + 7) / 8));
  const char* x = static_cast<const char*>(X.data);
  switch (X.dtype) {
    case DType::f32: launch<kc_facts<float>>(vgrid, 256, 0, 0, x, n, X.cols, row_bytes, s.norm64, facts); break;
    case DType::f16: launch<kc_facts<__half>>(vgrid, 256, 0, 0, x, n, X.cols, row_bytes, s.norm64, facts); break;
    case DType::bf16: launch<kc_facts<__nv_bfloat16>>(vgrid, 256, 0, 0, x, n, X.cols, row_bytes, s.norm64, facts); break;
    case DType::f64: launch<kc_facts<double>>(vgrid, 256, 0, 0, x, n, X.cols, row_bytes, s.norm64, facts); break;
  }
  unsigned long long f[8];
  SVP_CUDA(cudaMemcpy(f, facts, sizeof(f), cudaMemcpyDeviceToHost));
  if (f[0] != ~0ull)
    throw ValueError(format("%s must be finite, got a NaN or infinity at row %lld, column %lld", name,
                            static_cast<long long>(f[0] / static_cast<unsigned long long>(X.cols)),
                            static_cast<long long>(f[0] % static_cast<unsigned long long>(X.cols))));
  if (metric == Metric::cosine)
    SVP_CHECK_ARG(f[2] == ~0ull, "%s row %lld is all zeros; the cosine metric needs rows of nonzero norm",
                  name, static_cast<long long>(f[2]));
  if (float64) {
    KcParams<double> p = s.params<double>();
    launch<kc_prepare<double>>(1024, 256, 0, 0, p, nullptr, 0);
  } else {
    KcParams<float> p = s.params<float>();
    launch<kc_prepare<float>>(1024, 256, 0, 0, p, nullptr, 0);
  }
}

KCenterShardCuda::~KCenterShardCuda() = default;

int64_t KCenterShardCuda::rows() const { return impl_->X.rows; }

void KCenterShardCuda::exclude(int64_t r) {
  Impl& s = *impl_;
  SVP_CHECK_ARG(r >= 0 && r < s.X.rows, "local_row must be in [0, %lld), got %lld", (long long)s.X.rows,
                (long long)r);
  DeviceGuard guard(s.X.device);
  if (s.f64)
    launch<shard_exclude<double>>(1, 1, 0, 0, static_cast<double*>(s.m), r);
  else
    launch<shard_exclude<float>>(1, 1, 0, 0, static_cast<float*>(s.m), r);
}

void KCenterShardCuda::add_center(const void* raw_device, int64_t local_row) {
  Impl& s = *impl_;
  SVP_CHECK_ARG(local_row >= -1 && local_row < s.X.rows, "local_row must be -1 or in [0, %lld), got %lld",
                (long long)s.X.rows, (long long)local_row);
  if (s.X.rows == 0) {
    ++s.ordinal;
    return;
  }
  DeviceGuard guard(s.X.device);
  // the norm is recomputed from the row, as its owner did
  const char* raw = static_cast<const char*>(raw_device);
  if (local_row >= 0)
    raw = static_cast<const char*>(s.X.data) +
          local_row * s.X.row_stride * static_cast<long long>(dtype_size(s.X.dtype));
  s.apply_centers_q(raw, 1);
}

void KCenterShardCuda::offer(int64_t T, int64_t global_offset, void* message_device) {
  Impl& s = *impl_;
  SVP_CHECK_ARG(T >= 1, "the batched protocol needs T >= 1 candidates per rank, got %lld", (long long)T);
  const OfferLayout L{T, s.raw_row_bytes()};
  char* msg = static_cast<char*>(message_device);
  DeviceGuard guard(s.X.device);
  SVP_CUDA(cudaMemsetAsync(msg, 0, static_cast<size_t>(L.bytes()), 0));
  if (s.X.rows == 0) {  // nothing to offer: count 0, bound -1
    const long long count = 0;
    const double bound = -1.0;
    SVP_CUDA(cudaMemcpy(msg, &count, 8, cudaMemcpyHostToDevice));
    SVP_CUDA(cudaMemcpy(msg + 8, &bound, 8, cudaMemcpyHostToDevice));
    std::vector<double> recs(static_cast<size_t>(4 * T), 0.0);
    for (int64_t j = 0; j < T; ++j) {
      const long long none = -1;
      recs[4 * j] = -1.0;
      recs[4 * j + 1] = -1.0;
      std::memcpy(&recs[4 * j + 2], &none, 8);
      std::memcpy(&recs[4 * j + 3], &none, 8);
    }
    SVP_CUDA(cudaMemcpy(msg + 16, recs.data(), recs.size() * 8, cudaMemcpyHostToDevice));
    return;
  }
  SVP_CHECK_ARG(s.X.rows <= static_cast<long long>(std::numeric_limits<int>::max()),
                "the batched protocol sorts at most %d rows per CUDA shard, got %lld",
                std::numeric_limits<int>::max(), (long long)s.X.rows);
  if (s.f64)
    s.offer_typed<double>(T, global_offset, msg);
  else
    s.offer_typed<float>(T, global_offset, msg);
}

void KCenterShardCuda::add_centers(const void* rows_device, const int64_t* local_rows, int64_t q) {
  Impl& s = *impl_;
  SVP_CHECK_ARG(q >= 0, "add_centers needs q >= 0 centers, got %lld", (long long)q);
  std::vector<long long> mine;
  for (int64_t j = 0; j < q; ++j) {
    SVP_CHECK_ARG(local_rows[j] >= -1 && local_rows[j] < s.X.rows,
                  "local_rows[%lld] must be -1 or in [0, %lld), got %lld", (long long)j,
                  (long long)s.X.rows, (long long)local_rows[j]);
    if (local_rows[j] >= 0) mine.push_back(local_rows[j]);
  }
  if (s.X.rows == 0) {
    s.ordinal += q;
    return;
  }
  DeviceGuard guard(s.X.device);
  if (!mine.empty()) {
    const long long cnt = static_cast<long long>(mine.size());
    if (cnt > s.rows_cap) {
      s.rows_cap = std::max<long long>(cnt, 2 * s.rows_cap);
      s.rows_buf = s.take<long long>(s.rows_cap);
    }
    SVP_CUDA(cudaMemcpy(s.rows_buf, mine.data(), sizeof(long long) * cnt, cudaMemcpyHostToDevice));
    if (s.f64)
      launch<shard_exclude_rows<double>>(1, 256, 0, 0, static_cast<double*>(s.m), s.rows_buf, cnt);
    else
      launch<shard_exclude_rows<float>>(1, 256, 0, 0, static_cast<float*>(s.m), s.rows_buf, cnt);
  }
  s.apply_centers_q(static_cast<const char*>(rows_device), q);
}

void KCenterShardCuda::top2(double* v1, int64_t* i1, double* v2, int64_t* i2) {
  Impl& s = *impl_;
  *v1 = *v2 = -1;
  *i1 = *i2 = -1;
  if (s.X.rows == 0 || s.ordinal == 0) return;
  DeviceGuard guard(s.X.device);
  double r[4];
  SVP_CUDA(cudaMemcpy(r, s.result, sizeof(r), cudaMemcpyDeviceToHost));
  long long a, b;
  std::memcpy(&a, &r[1], 8);
  std::memcpy(&b, &r[3], 8);
  const long long none = 0x7fffffffffffffffLL;
  if (a != none && r[0] >= 0) {
    *v1 = r[0];
    *i1 = a;
  }
  if (b != none && r[2] >= 0) {
    *v2 = r[2];
    *i2 = b;
  }
}

double KCenterShardCuda::error_bound(double v) const { return impl_->err.E(v); }
double KCenterShardCuda::exact_tolerance(double v) const { return impl_->tie.E(v); }

void KCenterShardCuda::band(double thr, std::vector<int64_t>* idx, std::vector<double>* values) {
  Impl& s = *impl_;
  idx->clear();
  values->clear();
  if (s.X.rows == 0) return;
  DeviceGuard guard(s.X.device);
  SVP_CUDA(cudaMemset(s.band_count, 0, sizeof(int)));
  const int g = static_cast<int>(std::min<long long>(1024, (s.X.rows + 255) / 256));
  if (s.f64)
    launch<shard_band<double>>(g, 256, 0, 0, static_cast<const double*>(s.m), s.X.rows, thr, s.band_idx, s.band_val, s.band_count);
  else
    launch<shard_band<float>>(g, 256, 0, 0, static_cast<const float*>(s.m), s.X.rows, thr, s.band_idx, s.band_val, s.band_count);
  int count = 0;
  SVP_CUDA(cudaMemcpy(&count, s.band_count, sizeof(int), cudaMemcpyDeviceToHost));
  std::vector<int64_t> ix(static_cast<size_t>(count));
  std::vector<double> vv(static_cast<size_t>(count));
  if (count) {
    SVP_CUDA(cudaMemcpy(ix.data(), s.band_idx, sizeof(int64_t) * count, cudaMemcpyDeviceToHost));
    SVP_CUDA(cudaMemcpy(vv.data(), s.band_val, sizeof(double) * count, cudaMemcpyDeviceToHost));
  }
  // ascending local index, as the CPU shard reports them
  std::vector<size_t> order(ix.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ix[a] < ix[b]; });
  for (size_t k : order) {
    idx->push_back(ix[k]);
    values->push_back(vv[k]);
  }
}

double KCenterShardCuda::exact_min(const void* raw_y_device, const int64_t* local_rows, int64_t count) {
  Impl& s = *impl_;
  if (count == 0 || s.X.rows == 0) return std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < count; ++j)
    SVP_CHECK_ARG(local_rows[j] >= 0 && local_rows[j] < s.X.rows, "local_rows[%lld] = %lld is out of range",
                  (long long)j, (long long)local_rows[j]);
  DeviceGuard guard(s.X.device);
  if (count > s.rows_cap) {
    s.rows_cap = std::max<long long>(count, 2 * s.rows_cap);
    s.rows_buf = s.take<long long>(s.rows_cap);
  }
  SVP_CUDA(cudaMemcpy(s.rows_buf, local_rows, sizeof(int64_t) * count, cudaMemcpyHostToDevice));
  const unsigned long long inf_bits = 0x7ff0000000000000ull;
  SVP_CUDA(cudaMemcpy(s.counters + 1, &inf_bits, sizeof(inf_bits), cudaMemcpyHostToDevice));
  const int g = static_cast<int>(std::min<long long>(1024, (count + 7) / 8));
  const char* y = static_cast<const char*>(raw_y_device);
  if (s.f64)
    launch<shard_exact_min<double>>(g, kThreads, 0, 0, s.params<double>(), y, s.rows_buf, count, s.counters + 1);
  else
    launch<shard_exact_min<float>>(g, kThreads, 0, 0, s.params<float>(), y, s.rows_buf, count, s.counters + 1);
  unsigned long long best;
  SVP_CUDA(cudaMemcpy(&best, s.counters + 1, sizeof(best), cudaMemcpyDeviceToHost));
  double v;
  std::memcpy(&v, &best, 8);
  return v;
}

int64_t KCenterShardCuda::distance_evals() const {
  const Impl& s = *impl_;
  if (s.X.rows == 0) return 0;
  DeviceGuard guard(s.X.device);
  unsigned long long e = 0;
  SVP_CUDA(cudaMemcpy(&e, s.counters, sizeof(e), cudaMemcpyDeviceToHost));
  return static_cast<int64_t>(e);
}

}  // namespace cuda
}  // namespace svp
