// Exact greedy k-center (farthest-first traversal).
//
// Semantics (shared by every backend and method):
// - centers start as `already_selected` (never returned), or, when there are
//   none, as {start}, which is then the first pick;
// - each pick is the live point whose distance to its nearest center is the
//   largest; ties go to the lowest index;
// - picks are certified: distances are computed in float32 (float64 for
//   float64 input) with a rigorous error bound, and whenever two candidates are
//   closer than that bound the choice is made in float64. So the picks are those
//   of float64 arithmetic, whatever the backend, method, thread count or SIMD
//   width (see docs in README: "Exactness").
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "svp/common.h"

namespace svp {

// The engine that keeps the points' min-distances. `batched` is the scan engine
// under the batched driver (BatchOptions): the CPU twin of the GPU's batched
// k-center, which certifies many picks per pass over the data. `kdtree`:
// low-dimensional points (csrc/cpu/kdtree_engine.h).
enum class KCenterMethod : int { scan = 0, pruned = 1, lazy = 2, batched = 3, kdtree = 4 };

// The batched driver. Each pass takes the T points with the largest
// min-distances (the candidates) and B, a bound on every other point's value.
// Min-distances only fall, so while the best candidate, updated against the
// picks of this pass, is certified above B (its band [M - 2E(M), M] holds no
// point outside the candidates), it is exactly the next greedy pick; near-ties
// among the candidates are decided in float64 as in a plain step. The pass
// stops at the first pick it cannot certify, then applies all its picks to
// every point at once (the engine's add_centers with q = the pass's picks).
// Same picks as the plain driver on every input; far fewer passes over the
// data than picks.
struct BatchOptions {
  int64_t candidates = 0;  // T; 0: the plain driver (one pick per pass)
  int64_t max_picks = 0;   // picks per pass at most (0: no cap)
};

// A partition of the points into cells, for the pruned method. Any partition is
// correct; a good one (k-means) prunes more.
struct CellPartition {
  const int64_t* cell_of = nullptr;  // [N] cell of each point, in [0, n_cells)
  int64_t n_cells = 0;
  // The engine keeps a copy of the rows in cell order (faster: a step's
  // candidates are then a few contiguous runs) when it takes at most this.
  int64_t copy_max_bytes = int64_t{1} << 30;
  // Optional: the rows projected on k orthonormal directions, for a
  // per-member lower bound read from k floats instead of the D-element row
  // (svp_fast/selection/projection.py builds it; pruned_engine.h has the
  // bound). For every row x, in the working space, with V the (k x D)
  // directions (spectral norm <= 1, rows spanning the projector Pi) and mu a
  // fixed shift: proj_scale * proj[x] holds V(x - mu) within proj_err[x] (Euclidean
  // norm of the error), and ||(I - Pi)(x - mu)|| lies in
  // [resid_lo[x], resid_hi[x]].
  const float* proj = nullptr;  // [N, proj_dims], row order
  int64_t proj_dims = 0;        // 0: no projection
  const double* proj_err = nullptr;  // [N]
  const double* resid_lo = nullptr;  // [N]
  const double* resid_hi = nullptr;  // [N]
  const double* proj_directions = nullptr;  // [proj_dims, D] V, float64
  const double* proj_shift = nullptr;       // [D] mu, float64
  double proj_scale = 1.0;  // a power of two: the coordinates are proj * proj_scale
};

// The state of a run between two picks, to continue it later exactly: the
// same picks and radii as the uninterrupted run (a checkpoint). Arrays of N
// rows, owned by the caller. m holds -1 for centers and picks.
struct KCenterState {
  double* m = nullptr;         // [N] min squared distance (working space)
  double* m2 = nullptr;        // [N] lower bound on the distance to every other center
  int64_t* assign = nullptr;   // [N] ordinal of the center that gave m
  int64_t* fresh = nullptr;    // [N] centers the row has seen (fewer: m is a stale upper bound)
  int64_t centers = 0;         // centers applied (ordinals 0 .. centers-1)
  double prev_radius = 0;      // squared radius of the last pick (radii never increase)
  int64_t picks = 0;           // picks this call had made when the state was taken
  int64_t generation = 0;      // snapshots taken so far (the caller sees a new one land)
  // where a snapshot also writes {generation, picks, centers, prev_radius}
  // (as float64), for callers that read it between polls; or null
  double* header = nullptr;
};

struct KCenterOptions {
  Metric metric = Metric::euclidean;
  int64_t budget = 0;
  const int64_t* already_selected = nullptr;  // [n_selected] row indices
  int64_t n_selected = 0;
  int64_t start = 0;  // first pick when n_selected == 0
  KCenterMethod method = KCenterMethod::scan;
  CellPartition cells;  // required for the pruned method
  // Pruned method: fall back to the scan when, over a window of steps, it
  // evaluates more than this fraction of the point distances a scan would.
  double fallback_fraction = 2.0;  // > 1: never fall back
  BatchOptions batch;  // any engine; the batched method sets candidates by default
  // Continue a run from a state (a checkpoint): already_selected lists the
  // state's centers in ordinal order and nothing is applied again.
  const KCenterState* resume = nullptr;
  // Where to write the state between picks, at most every snapshot_interval
  // seconds (before the progress poll, which can then save it).
  KCenterState* snapshot = nullptr;
  double snapshot_interval = 10.0;
  // without `resume`: the squared radius (working space) of the last pick of
  // a run this call continues by its picks (as already_selected), so that
  // radii stay non-increasing across the two as in one run; +inf otherwise
  double prev_radius = std::numeric_limits<double>::infinity();
  int num_threads = 0;  // 0: OpenMP's default
  Progress* progress = nullptr;
  double poll_interval = 0.1;  // seconds between progress->poll calls
  const char* arg_name = "embeddings";  // used in error messages
  const char* simd = nullptr;  // force a kernel ISA ("avx512", "avx2", "generic")
};

struct KCenterStats {
  int64_t distance_evals = 0;  // point-center distances computed in the fast path
  int64_t scan_evals = 0;      // what a plain scan would have computed
  int64_t ambiguous_steps = 0;      // steps whose argmax needed float64 checks
  int64_t exact_distance_evals = 0;  // float64 point-center distances
  int64_t fallback_step = -1;  // step at which the pruned method fell back to the scan
  bool float64_accumulation = false;
  double setup_seconds = 0;   // validation, norms, cells
  double select_seconds = 0;  // the picking loop
  int method_used = 0;        // KCenterMethod
  int64_t passes = 0;         // passes over the data (the batched driver; else picks)
  int64_t candidate_evals = 0;  // batched: candidate-to-pick distances within passes
  int product = 0;              // batched on the GPU: 0 the fused kernel, 1 cuBLAS-screened
  int64_t projection_tests = 0;  // pruned: members tested with the projection bound
  int64_t projection_skips = 0;  // of those, the ones it ruled out (no distance computed)
  // CPU: distances applied through the product screen (csrc/cpu/product_screen.h),
  // and the fast distances it left to compute
  int64_t product_pairs = 0;
  int64_t product_recomputes = 0;
};

// X: N x D embeddings. picks: [budget] output. radii: [budget] output or null;
// radius[t] is the distance from pick t to its nearest earlier center (+inf for
// the start pick), Euclidean distance or cosine distance 1 - cos.
void kcenter_cpu(const MatrixView& X, const KCenterOptions& opt, int64_t* picks,
                 double* radii, KCenterStats* stats);

// Build/run-time facts for svp_fast.build_info().
struct CpuInfo {
  const char* simd;  // ISA used by the kernels: "avx512", "avx2" or "generic"
  const char* simd_compiled;  // ISAs compiled in
  int omp_max_threads;
  bool openmp;
};
CpuInfo cpu_info();

// Best-of-`repeats` read bandwidth (bytes/s) streaming a buffer of `bytes`
// with `num_threads` threads (0: all): the memory floor of a scan.
double measure_read_bandwidth(int64_t bytes, int num_threads, int repeats);

// For each of the n float64 rows of x (row-major, D columns): the distances to
// its nearest and second-nearest other row (r1 <= r2), as direct differences
// in float64. O(n^2 D); used on a small sample to estimate the intrinsic
// dimension when choosing an engine. Runs on the core's own threads, so that
// no other thread pool is left spinning against the selection that follows.
void two_nearest_distances(const double* x, int64_t n, int64_t D, int num_threads, double* r1,
                           double* r2);

// When the CPU engines apply many centers as a matrix product screened by a
// rigorous bound (csrc/cpu/product_screen.h): rows of at least min_cols
// columns, blocks of at least min_centers centers, center_block centers per
// kernel call. Never affects picks or radii. Tests lower the thresholds so
// that small inputs take the path; benchmarks raise min_cols to compare.
// Measured on one thread (isotropic rows, 5,000 picks; time without / with
// the product): lazy 1.06x at 96 columns, 0.98x at 64, 0.81x at 32; batched
// 1.39x, 1.14x, 0.79x; from 256 columns lazy 1.10-1.38x, batched 2.1-2.3x.
struct ProductTuning {
  int64_t min_cols = 96;
  int64_t min_centers = 8;
  int64_t center_block = 64;
};
ProductTuning product_tuning();
// Sets the tuning (values < 1 keep the current one); returns the previous.
ProductTuning set_product_tuning(const ProductTuning& t);

// The product kernel, for tests: out[r * nc + c] = rows[r] . centers[c] with
// the named ISA's kernel ("" for the one in use), accumulated in float32 for
// 16/32-bit rows and float64 for float64 rows; centers: nc x D float32
// (float64 for float64 rows), contiguous.
void dot_block_kernel(const MatrixView& rows, const void* centers, int64_t nc, const char* simd,
                      double* out);

// The product kernel's multiply-add rate (flops/s, two per multiply-add) on
// `threads` threads (0: all), each applying blocks of 64 centers to its own
// rows of D float16 (or float32) columns held in cache: the arithmetic rate
// the engines' product paths run at, for the benchmarks' floor. Per wall
// second, or (per_cpu_second) the sum of the threads' rates per second of
// their own CPU time, which other work on the machine barely moves.
double measure_product_rate(int64_t D, bool float16, int threads, double seconds,
                            bool per_cpu_second = false);

// A kernel of the pruned engine, for tests: the two largest of m[0..n) as a
// multiset (-1 where fewer than two are >= -1), with the named ISA's kernel
// ("" for the one in use).
void max2_kernel(const float* m, int64_t n, const char* simd, float* out);

}  // namespace svp
