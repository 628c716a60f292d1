// The workspace layout of CUDA k-center and the entry points of its picking
// loop. The loop (kcenter_run.cuh) is compiled once per variant, each in its
// own translation unit, so that a parallel build shares what used to be one
// two-minute nvcc call; kcenter.cu, the host driver, only sees this header.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kcenter_steps.cuh"
#include "launch.cuh"

namespace svp {
namespace cuda {
namespace detail {

// What the batched screen (kb_screen) reads of a pick, in float32: |c|^2,
// |c|, and for cosine the scale of its raw row (1/||c||, taking the product of
// raw rows to the working space).
struct PickScreen {
  float c2, cn, inv_norm;
};

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
  // batched method
  long long batch_T = 0;   // candidates per pass
  void* keys_out = nullptr;    // [N] Acc: min-distances, sorted best first
  int* rows_in = nullptr;      // [N] 0..N-1
  int* rows_out = nullptr;     // [N] the rows in that order
  void* dmat = nullptr;        // [T, T] Acc: candidate i to candidate j as a center
  void* bsort_temp = nullptr;
  size_t bsort_bytes = 0;
  // batched, the screened product (float32 accumulation of 16-bit/fp32 rows)
  double* sqn = nullptr;   // [N] |x|^2, float64
  void* x3 = nullptr;      // [N, 3D] bf16: float32 rows as [xh | xl | xh] (3xBF16 product)
  void* praw = nullptr;    // [T, K] the pass's picks as the product's factor (K = D, or 3D split)
  float* pw = nullptr;     // [T, cstride] their working-space vectors
  PickScreen* pscreen = nullptr;  // [T] what the screen reads of them
  float* sbuf = nullptr;   // [sbuf_rows, T] a chunk of the product
  long long sbuf_rows = 0;
  int max_blocks = 0;
  int64_t bytes = 0;
};

// Whether kernels fit on the device, with the clear message a user can act on
// (decided before any attribute call could fail with a raw CUDA error), and
// the dynamic shared memory they are allowed.
struct KernelFit {
  int device = 0;
  long long D = 0;
  int optin = 0;  // the largest dynamic shared memory a block may opt in to
  int sms = 0;

  KernelFit(int dev, long long cols) : device(dev), D(cols) {
    SVP_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    SVP_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  }
  // Kernel fits with `smem` bytes of dynamic shared memory (and its static
  // part), or the error a user can act on; then its limit is raised where the
  // two exceed 48 KB together
  template <auto Kernel>
  void allow(size_t smem, const char* what) const {
    const size_t total = smem + static_shared_bytes<Kernel>();
    if (total > static_cast<size_t>(optin))
      throw CudaError(format("svp_fast: the k-center %s kernel does not fit on this GPU (D = %lld "
                             "needs %zu bytes of shared memory per block; the device allows %d)",
                             what, D, total, optin));
    allow_dynamic_smem<Kernel>(smem);
  }
  template <auto Kernel>
  int blocks_per_sm(int threads, size_t smem, const char* what) const {
    const int per_sm = max_active_blocks_per_sm<Kernel>(threads, smem);
    if (per_sm < 1)
      throw CudaError(format("svp_fast: the k-center %s kernel does not fit on this GPU "
                             "(D = %lld, %zu bytes of shared memory per block)", what, D, smem));
    return per_sm;
  }
};

// Cells on the device (kcenter.cu, for Acc = float and double): members grouped
// by cell, centroids, distances to the centroid sorted within each cell.
template <typename Acc>
void setup_cells(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
                 const Layout& L, cudaStream_t stream);

// The picking loop for input elements T, accumulation Acc, CPL 16-byte chunks
// per lane and iteration, vector loads or not (kcenter_run.cuh): cells
// (pruned), initial centers, then the steps as cooperative kernels in chunks.
// Each variant is its own translation unit, generated by CMake from
// kcenter_instance.cu.in; run_typed in kcenter.cu chooses among them.
template <typename T, typename Acc, int CPL, bool VEC>
void run_steps(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
               const Layout& L, cudaStream_t stream, int64_t t0, KCenterStats* st);

// The batched picking loop for the same variants (kcenter_batched.cuh): per
// pass, the T best candidates (a radix sort of the min-distances), their
// T x T distances, the certified sequential acceptance on the device, then
// the pass's picks applied to every row. The CUDA twin of the CPU's batched
// driver (svp/kcenter.h, BatchOptions).
template <typename T, typename Acc, int CPL, bool VEC>
void run_batched(const DeviceMatrix& X, const KCenterCudaOptions& opt, KcParams<Acc>& p,
                 const Layout& L, cudaStream_t stream, int64_t t0, KCenterStats* st);

// The parts of a batched pass that do not depend on the input dtype
// (kcenter_batched.cu, for Acc = float and double).
// The min-distances sorted best first (stable: ties keep the lower row first):
// keys_out[0..N) and rows_out[0..N).
template <typename Acc>
void batched_sort(const KcParams<Acc>& p, const Layout& L, cudaStream_t stream);
// rows_in = 0..n-1, once per run (the sort never changes its input).
void batched_init_rows(const Layout& L, long long n, cudaStream_t stream);
// Workspace bytes of the sort of n keys (float or double).
size_t batched_sort_bytes(long long n);
// The acceptance of one pass as a cooperative kernel on `grid` blocks; writes
// the picks and radii it certifies and the run state (KcState: t, pass_picks).
template <typename Acc>
void batched_accept(const KcParams<Acc>& p, const Layout& L, int nc, long long live,
                    long long t_cap, int grid, cudaStream_t stream);
// Its launch geometry: the blocks a cooperative launch may use with nc candidates.
template <typename Acc>
int batched_accept_grid(const KernelFit& fit, int nc, int max_blocks);

}  // namespace detail
}  // namespace cuda
}  // namespace svp
