// The CUDA backend: twins of the CPU k-center and uncertainty with the same
// semantics, on device pointers, on the caller's device and stream.
//
// Memory: the caller (the Python layer, through torch's caching allocator)
// provides one workspace buffer of the size the *_workspace functions report,
// so memory is accounted for by the framework and returns to its cache.
// No function here synchronises per step: k-center runs as a persistent,
// cooperative kernel over chunks of steps; the host only enqueues chunks and
// polls events (progress, Ctrl-C), with one synchronisation at the start
// (input validation) and one at the end (statistics).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "svp/common.h"
#include "svp/kcenter.h"
#include "svp/uncertainty.h"

namespace svp {
namespace cuda {

// A CUDA failure: the CUDA message, the call and where. Maps to RuntimeError.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The cuBLAS library the batched engine's product loads (dlopen) on first use;
// "" keeps the search order of csrc/cuda/cublas_runtime.h. Returns whether it
// loads and, when not, why.
bool set_cublas_library(const std::string& path, std::string* why_not);

// Number of visible devices; throws CudaError("no CUDA device ...") when the
// driver or the device is missing.
int device_count();
std::string device_name(int device);

struct DeviceMatrix {
  const void* data = nullptr;  // device address of element (0, 0)
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0;  // elements
  DType dtype = DType::f32;
  int device = 0;
  std::uintptr_t stream = 0;  // cudaStream_t of the caller (0: legacy default)
};

struct KCenterCudaOptions {
  Metric metric = Metric::euclidean;
  int64_t budget = 0;
  const int64_t* already_selected = nullptr;  // HOST array [n_selected]
  int64_t n_selected = 0;
  int64_t start = 0;
  KCenterMethod method = KCenterMethod::scan;  // scan, pruned or batched (lazy runs as scan)
  const int64_t* cell_of = nullptr;  // DEVICE array [N] (pruned), cell ids in [0, n_cells)
  int64_t n_cells = 0;
  // pruned: hand over to the scan when, past the first 256 picks, a chunk of
  // steps scans more than this fraction of the live points (> 1: never)
  double fallback_fraction = 2.0;
  // batched: candidates per pass (T, at most 4096; 0: 256) and picks per pass
  // at most (0: T); rows must number below 2^31 (the sort's row index)
  int64_t batch_candidates = 0;
  int64_t batch_max_picks = 0;
  // batched: the pass product, 0 auto (cuBLAS-screened where cuBLAS loads and
  // the input allows, else fused), 1 the fused kernel, 2 cuBLAS-screened or an error
  int batch_product = 0;
  // the squared radius (working space) of the last pick of a run this call
  // continues (its picks as already_selected): radii stay non-increasing
  // across the two exactly as in one run; +inf otherwise
  double prev_radius = std::numeric_limits<double>::infinity();
  Progress* progress = nullptr;  // picks passed to poll are null (they live on the device)
  double poll_interval = 0.1;
  const char* arg_name = "embeddings";
};

// Bytes of workspace kcenter_cuda needs.
int64_t kcenter_cuda_workspace(const DeviceMatrix& X, const KCenterCudaOptions& opt);

// picks: DEVICE int64 [budget]; radii: DEVICE float64 [budget] or null.
void kcenter_cuda(const DeviceMatrix& X, const KCenterCudaOptions& opt, void* workspace,
                  int64_t workspace_bytes, int64_t* picks, double* radii, KCenterStats* stats);

struct UncertaintyCudaOptions {
  UncertaintyMethod method = UncertaintyMethod::least_confidence;
  ScoreInput input = ScoreInput::logits;
  bool check_finite = true;
  double probs_tolerance = 1e-3;
  const char* arg_name = "x";
};

int64_t uncertainty_cuda_workspace(const DeviceMatrix& X, int64_t k);
// scores: DEVICE [N], float32 (float64 for float64 input, computed in float64).
// With k > 0 also the top k, the float64 reference's (svp/uncertainty_exact.h),
// equal to the CPU's: order DEVICE int64 [k], top DEVICE [k] (scores' type) or
// null; the scores of the rows recomputed in float64 are then their float64
// scores. k < 0: scores only (no top-k workspace). stats: HOST, or null (when
// given, the call synchronises the stream at its end to fill it).
void uncertainty_cuda(const DeviceMatrix& X, const UncertaintyCudaOptions& opt, void* workspace,
                      int64_t workspace_bytes, void* scores, int64_t k, int64_t* order, void* top,
                      UncertaintyStats* stats = nullptr);

}  // namespace cuda
}  // namespace svp

namespace svp {
namespace cuda {

// The k-center state of one shard on a GPU (the CUDA twin of
// svp::KCenterShard, for distributed k-center over NCCL), driven step by step
// or by the batched protocol's passes. Row pointers (X, add_center's,
// add_centers' and exact_min's vectors) and the offer's message are device
// addresses on X's device; index arrays and results are host values. Work
// runs on the legacy default stream; device memory is the shard's own
// (cudaMalloc), freed with it.
class KCenterShardCuda {
 public:
  // Validates X (NaN/Inf; zero rows for cosine). float64: the arithmetic rule
  // decided on facts reduced over every shard (shard_needs_float64).
  KCenterShardCuda(const DeviceMatrix& X, Metric metric, bool float64, const char* arg_name);
  ~KCenterShardCuda();
  KCenterShardCuda(const KCenterShardCuda&) = delete;
  KCenterShardCuda& operator=(const KCenterShardCuda&) = delete;

  int64_t rows() const;
  void exclude(int64_t local_row);
  void add_center(const void* raw_device, int64_t local_row);
  void top2(double* v1, int64_t* i1, double* v2, int64_t* i2);
  double error_bound(double value) const;     // the band model, as KCenterShard
  double exact_tolerance(double value) const;
  void band(double thr, std::vector<int64_t>* idx, std::vector<double>* values);
  double exact_min(const void* raw_y_device, const int64_t* local_rows, int64_t count);
  int64_t distance_evals() const;
  // The batched protocol, as KCenterShard: the offer (svp/shard.h,
  // OfferLayout) written to device memory, queued without a host
  // synchronisation (so no count is returned: it is in the message), and q
  // centers applied at once (rows: q raw rows back to back on the device;
  // local_rows: host, -1 or the local row, excluded first).
  void offer(int64_t T, int64_t global_offset, void* message_device);
  void add_centers(const void* rows_device, const int64_t* local_rows, int64_t q);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda
}  // namespace svp
