// The only file that knows Python. Every array arrives as an address plus
// shape, strides and dtype (the Python layer, svp_fast/_arrays.py, normalises
// numpy arrays, memmaps and torch tensors and keeps them alive); outputs are
// written into buffers the Python layer allocated. The GIL is released around
// every core call and re-taken only inside the progress hook.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <exception>
#include <limits>
#include <string>

#include "svp/common.h"
#include "svp/grouped.h"
#include "svp/kcenter.h"
#include "svp/shard.h"
#include "svp/uncertainty.h"
#ifdef SVP_WITH_CUDA
#include <cuda_runtime.h>

#include "svp/cuda.h"
#include "svp/grouped_cuda.h"
#endif

namespace py = pybind11;

namespace {

svp::MatrixView view(std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride,
                     int dtype) {
  svp::MatrixView X;
  X.data = reinterpret_cast<const void*>(ptr);
  X.rows = rows;
  X.cols = cols;
  X.row_stride = row_stride;
  SVP_CHECK_ARG(dtype >= 0 && dtype <= 3, "unknown dtype code %d", dtype);
  X.dtype = static_cast<svp::DType>(dtype);
  return X;
}

// Calls back into Python between steps: checks for signals (Ctrl-C) and runs
// the user's progress callback. A Python exception raised there is kept and
// re-raised once the core has unwound.
class PyProgress final : public svp::Progress {
 public:
  explicit PyProgress(py::object callback) : callback_(std::move(callback)) {}
  ~PyProgress() override {
    if (type_ || value_ || tb_) {
      py::gil_scoped_acquire gil;
      Py_XDECREF(type_);
      Py_XDECREF(value_);
      Py_XDECREF(tb_);
    }
  }
  bool poll(int64_t done, const int64_t*) override {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
      stash();
      return false;
    }
    if (!callback_.is_none()) {
      PyObject* r = PyObject_CallFunction(callback_.ptr(), "L", static_cast<long long>(done));
      if (!r) {
        stash();
        return false;
      }
      Py_DECREF(r);
    }
    return true;
  }
  // Re-raise the stashed exception (GIL held by the caller).
  [[noreturn]] void rethrow() {
    if (type_) {
      PyErr_Restore(type_, value_, tb_);
      type_ = value_ = tb_ = nullptr;
      throw py::error_already_set();
    }
    throw py::value_error("cancelled");
  }

 private:
  void stash() { PyErr_Fetch(&type_, &value_, &tb_); }
  py::object callback_;
  PyObject* type_ = nullptr;
  PyObject* value_ = nullptr;
  PyObject* tb_ = nullptr;
};

// Runs a core call without the GIL, the core polling `hook`; when the hook
// stopped it (Ctrl-C, an exception in the callback), re-raises that here.
template <typename Fn>
void run_cancellable(PyProgress& hook, Fn&& core_call) {
  bool cancelled = false;
  {
    py::gil_scoped_release nogil;
    try {
      core_call();
    } catch (const svp::Cancelled&) {
      cancelled = true;
    }
  }
  if (cancelled) hook.rethrow();
}

const char* method_name(int method) {
  switch (static_cast<svp::KCenterMethod>(method)) {
    case svp::KCenterMethod::scan: return "scan";
    case svp::KCenterMethod::pruned: return "pruned";
    case svp::KCenterMethod::lazy: return "lazy";
    case svp::KCenterMethod::batched: return "batched";
    case svp::KCenterMethod::kdtree: return "kdtree";
  }
  return "unknown";
}

py::dict stats_dict(const svp::KCenterStats& s) {
  py::dict d;
  d["distance_evals"] = s.distance_evals;
  d["scan_evals"] = s.scan_evals;
  d["ambiguous_steps"] = s.ambiguous_steps;
  d["exact_distance_evals"] = s.exact_distance_evals;
  d["fallback_step"] = s.fallback_step;
  d["float64_accumulation"] = s.float64_accumulation;
  d["setup_seconds"] = s.setup_seconds;
  d["select_seconds"] = s.select_seconds;
  d["passes"] = s.passes;
  d["candidate_evals"] = s.candidate_evals;
  d["product"] = s.product == 1 ? "cublas" : "fused";
  d["method"] = method_name(s.method_used);
  d["projection_tests"] = s.projection_tests;
  d["projection_skips"] = s.projection_skips;
  d["product_pairs"] = s.product_pairs;
  d["product_recomputes"] = s.product_recomputes;
  return d;
}

py::dict kcenter_cpu(std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride,
                     int dtype, int metric, int64_t budget, std::uintptr_t selected_ptr,
                     int64_t n_selected, int64_t start, int method, std::uintptr_t cells_ptr,
                     int64_t n_cells, int64_t cell_copy_max_bytes, double fallback_fraction,
                     int64_t batch_candidates, int64_t batch_max_picks, int num_threads,
                     std::uintptr_t picks_ptr, std::uintptr_t radii_ptr, py::object progress,
                     double poll_interval, std::string simd, std::string arg_name,
                     py::object resume, py::object snapshot, double prev_radius,
                     py::object projection) {
  svp::MatrixView X = view(ptr, rows, cols, row_stride, dtype);
  svp::KCenterOptions opt;
  SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
  opt.metric = static_cast<svp::Metric>(metric);
  opt.budget = budget;
  opt.already_selected = reinterpret_cast<const int64_t*>(selected_ptr);
  opt.n_selected = n_selected;
  opt.start = start;
  SVP_CHECK_ARG(method >= 0 && method <= 4, "unknown method code %d", method);
  opt.method = static_cast<svp::KCenterMethod>(method);
  opt.cells.cell_of = reinterpret_cast<const int64_t*>(cells_ptr);
  opt.cells.n_cells = n_cells;
  opt.cells.copy_max_bytes = cell_copy_max_bytes;
  // the pruned engine's projection bound: {"coords": ptr, "dims": k,
  // "err": ptr, "resid_lo": ptr, "resid_hi": ptr, "directions": ptr, "shift": ptr,
  // "scale": a power of two}
  // (selection/projection.py)
  if (!projection.is_none()) {
    const py::dict pj = projection.cast<py::dict>();
    opt.cells.proj = reinterpret_cast<const float*>(pj["coords"].cast<std::uintptr_t>());
    opt.cells.proj_dims = pj["dims"].cast<int64_t>();
    opt.cells.proj_err = reinterpret_cast<const double*>(pj["err"].cast<std::uintptr_t>());
    opt.cells.resid_lo = reinterpret_cast<const double*>(pj["resid_lo"].cast<std::uintptr_t>());
    opt.cells.resid_hi = reinterpret_cast<const double*>(pj["resid_hi"].cast<std::uintptr_t>());
    opt.cells.proj_directions =
        reinterpret_cast<const double*>(pj["directions"].cast<std::uintptr_t>());
    opt.cells.proj_shift = reinterpret_cast<const double*>(pj["shift"].cast<std::uintptr_t>());
    opt.cells.proj_scale = pj["scale"].cast<double>();
  }
  opt.fallback_fraction = fallback_fraction;
  opt.batch.candidates = batch_candidates;
  opt.batch.max_picks = batch_max_picks;
  // checkpoints: {"m": ptr, "m2": ptr, "assign": ptr, "fresh": ptr, "centers": K,
  // "prev_radius": r} to continue from, and the same (plus "header": ptr,
  // "interval": s) for the state to write between picks
  auto state_from = [](const py::dict& d) {
    svp::KCenterState st;
    st.m = reinterpret_cast<double*>(d["m"].cast<std::uintptr_t>());
    st.m2 = reinterpret_cast<double*>(d["m2"].cast<std::uintptr_t>());
    st.assign = reinterpret_cast<int64_t*>(d["assign"].cast<std::uintptr_t>());
    st.fresh = reinterpret_cast<int64_t*>(d["fresh"].cast<std::uintptr_t>());
    if (d.contains("centers")) st.centers = d["centers"].cast<int64_t>();
    if (d.contains("prev_radius")) st.prev_radius = d["prev_radius"].cast<double>();
    if (d.contains("header")) st.header = reinterpret_cast<double*>(d["header"].cast<std::uintptr_t>());
    return st;
  };
  opt.prev_radius = prev_radius;
  svp::KCenterState resume_state, snapshot_state;
  if (!resume.is_none()) {
    resume_state = state_from(resume.cast<py::dict>());
    SVP_CHECK_ARG(resume_state.m && resume_state.m2 && resume_state.assign && resume_state.fresh &&
                      resume_state.centers == n_selected,
                  "resume: the state's arrays and its %lld centers (as already_selected, %lld "
                  "given) are required", (long long)resume_state.centers, (long long)n_selected);
    opt.resume = &resume_state;
  }
  if (!snapshot.is_none()) {
    py::dict d = snapshot.cast<py::dict>();
    snapshot_state = state_from(d);
    opt.snapshot = &snapshot_state;
    if (d.contains("interval")) opt.snapshot_interval = d["interval"].cast<double>();
  }
  opt.num_threads = num_threads;
  opt.poll_interval = poll_interval;
  opt.simd = simd.empty() ? nullptr : simd.c_str();
  opt.arg_name = arg_name.c_str();
  PyProgress hook(std::move(progress));
  opt.progress = &hook;
  svp::KCenterStats stats;
  run_cancellable(hook, [&] {
    svp::kcenter_cpu(X, opt, reinterpret_cast<int64_t*>(picks_ptr),
                     reinterpret_cast<double*>(radii_ptr), &stats);
  });
  return stats_dict(stats);
}

// Per-group statistics as lists, beside the totals.
py::dict group_stats_dict(const svp::KCenterStats& total, const std::vector<svp::KCenterStats>& per) {
  py::dict d = stats_dict(total);
  py::list method, fallback, ambiguous, evals, scan, f64;
  for (const svp::KCenterStats& s : per) {
    method.append(method_name(s.method_used));
    fallback.append(s.fallback_step);
    ambiguous.append(s.ambiguous_steps);
    evals.append(s.distance_evals);
    scan.append(s.scan_evals);
    f64.append(s.float64_accumulation);
  }
  d["group_method"] = method;
  d["group_fallback_step"] = fallback;
  d["group_ambiguous_steps"] = ambiguous;
  d["group_distance_evals"] = evals;
  d["group_scan_evals"] = scan;
  d["group_float64_accumulation"] = f64;
  return d;
}

py::dict kcenter_groups_cpu(std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride,
                            int dtype, int metric, int64_t n_groups, std::uintptr_t members_ptr,
                            std::uintptr_t offsets_ptr, std::uintptr_t budgets_ptr,
                            std::uintptr_t starts_ptr, std::uintptr_t selected_ptr,
                            std::uintptr_t selected_offsets_ptr, std::uintptr_t methods_ptr,
                            std::uintptr_t cells_ptr, std::uintptr_t n_cells_ptr, int64_t set_rows,
                            int64_t cell_copy_max_bytes, double fallback_fraction,
                            int num_threads, std::uintptr_t picks_ptr, std::uintptr_t radii_ptr,
                            py::object progress, double poll_interval, std::string simd,
                            std::string arg_name) {
  svp::MatrixView X = view(ptr, rows, cols, row_stride, dtype);
  SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
  svp::KCenterGroups grp;
  grp.n_groups = n_groups;
  grp.members = reinterpret_cast<const int64_t*>(members_ptr);
  grp.offsets = reinterpret_cast<const int64_t*>(offsets_ptr);
  grp.budgets = reinterpret_cast<const int64_t*>(budgets_ptr);
  grp.starts = reinterpret_cast<const int64_t*>(starts_ptr);
  grp.selected = reinterpret_cast<const int64_t*>(selected_ptr);
  grp.selected_offsets = reinterpret_cast<const int64_t*>(selected_offsets_ptr);
  grp.methods = reinterpret_cast<const int*>(methods_ptr);
  grp.cells = reinterpret_cast<const int64_t*>(cells_ptr);
  grp.n_cells = reinterpret_cast<const int64_t*>(n_cells_ptr);
  grp.set_rows = set_rows;
  svp::KCenterGroupsOptions opt;
  opt.metric = static_cast<svp::Metric>(metric);
  opt.fallback_fraction = fallback_fraction;
  opt.cell_copy_max_bytes = cell_copy_max_bytes;
  opt.num_threads = num_threads;
  opt.poll_interval = poll_interval;
  opt.simd = simd.empty() ? nullptr : simd.c_str();
  opt.arg_name = arg_name.c_str();
  PyProgress hook(std::move(progress));
  opt.progress = &hook;
  svp::KCenterStats total;
  std::vector<svp::KCenterStats> per(static_cast<size_t>(std::max<int64_t>(n_groups, 0)));
  run_cancellable(hook, [&] {
    svp::kcenter_groups_cpu(X, grp, opt, reinterpret_cast<int64_t*>(picks_ptr),
                            reinterpret_cast<double*>(radii_ptr), per.data(), &total);
  });
  return group_stats_dict(total, per);
}

void uncertainty_scores_cpu(std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride,
                            int dtype, int method, int input, bool check_finite,
                            double probs_tolerance, int num_threads, std::uintptr_t out_ptr,
                            std::string simd, std::string arg_name) {
  svp::MatrixView X = view(ptr, rows, cols, row_stride, dtype);
  svp::UncertaintyOptions opt;
  SVP_CHECK_ARG(method >= 0 && method <= 2, "unknown method code %d", method);
  SVP_CHECK_ARG(input == 0 || input == 1, "unknown input code %d", input);
  opt.method = static_cast<svp::UncertaintyMethod>(method);
  opt.input = static_cast<svp::ScoreInput>(input);
  opt.check_finite = check_finite;
  opt.probs_tolerance = probs_tolerance;
  opt.num_threads = num_threads;
  opt.simd = simd.empty() ? nullptr : simd.c_str();
  opt.arg_name = arg_name.c_str();
  py::gil_scoped_release nogil;
  svp::uncertainty_scores_cpu(X, opt, reinterpret_cast<double*>(out_ptr));
}

py::dict uncertainty_topk_cpu(std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride,
                              int dtype, int method, int input, bool check_finite,
                              double probs_tolerance, int num_threads, int64_t k,
                              std::uintptr_t order_ptr, std::uintptr_t top_ptr, std::string simd,
                              std::string arg_name) {
  svp::MatrixView X = view(ptr, rows, cols, row_stride, dtype);
  svp::UncertaintyOptions opt;
  SVP_CHECK_ARG(method >= 0 && method <= 2, "unknown method code %d", method);
  SVP_CHECK_ARG(input == 0 || input == 1, "unknown input code %d", input);
  opt.method = static_cast<svp::UncertaintyMethod>(method);
  opt.input = static_cast<svp::ScoreInput>(input);
  opt.check_finite = check_finite;
  opt.probs_tolerance = probs_tolerance;
  opt.num_threads = num_threads;
  opt.simd = simd.empty() ? nullptr : simd.c_str();
  opt.arg_name = arg_name.c_str();
  svp::UncertaintyStats st;
  {
    py::gil_scoped_release nogil;
    svp::uncertainty_topk_cpu(X, opt, k, reinterpret_cast<int64_t*>(order_ptr),
                              reinterpret_cast<double*>(top_ptr), &st);
  }
  py::dict d;
  d["candidates"] = st.candidates;
  d["rows_refined"] = st.rows_refined;
  d["tie_groups"] = st.tie_groups;
  d["passes"] = st.passes;
  return d;
}

py::dict build_info() {
  py::dict d;
  svp::CpuInfo c = svp::cpu_info();
  d["simd"] = c.simd;
  d["simd_compiled"] = c.simd_compiled;
  d["openmp"] = c.openmp;
  d["omp_max_threads"] = c.omp_max_threads;
#ifdef SVP_WITH_CUDA
  d["cuda_compiled"] = true;
  d["cuda_architectures"] = SVP_CUDA_ARCHS;
#else
  d["cuda_compiled"] = false;
  d["cuda_architectures"] = "";
#endif
  // the CUDA sources compiled for the CPU against the emulation of the CUDA
  // execution model (csrc/cuda_emu): "CUDA" tensors are host memory there
#ifdef SVP_CUDA_EMULATION
  d["cuda_emulated"] = true;
#else
  d["cuda_emulated"] = false;
#endif
  d["version"] = SVP_VERSION;
  return d;
}

py::dict shard_facts(std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype,
                     int num_threads, std::string simd) {
  svp::MatrixView X = view(ptr, rows, cols, row_stride, dtype);
  svp::ShardFacts f;
  {
    py::gil_scoped_release nogil;
    f = svp::shard_facts(X, num_threads, simd.empty() ? nullptr : simd.c_str());
  }
  py::dict d;
  d["bad_row"] = f.bad_row;
  d["bad_col"] = f.bad_col;
  d["bad_value"] = f.bad_value;
  d["zero_row"] = f.zero_row;
  d["max_abs"] = f.max_abs;
  d["min_norm"] = f.min_norm;
  d["max_norm"] = f.max_norm;
  return d;
}

bool shard_needs_float64(double max_abs, double min_norm, double max_norm, int dtype, int metric,
                         int64_t D) {
  svp::ShardFacts f;
  f.max_abs = max_abs;
  f.min_norm = min_norm;
  f.max_norm = max_norm;
  return svp::shard_needs_float64(f, static_cast<svp::DType>(dtype),
                                  static_cast<svp::Metric>(metric), D);
}

#ifdef SVP_WITH_CUDA
#ifdef SVP_CUDA_EMULATION
// Around every call into the CUDA core: the GIL released, and (emulated build)
// the device synchronised before the call returns. The emulated device's
// memory is host memory owned by torch's CPU allocator: where a GPU's
// caching allocator and torch's reads of CUDA tensors order themselves on the
// stream, here Python must read (and free) only memory the device is done
// with. A kernel failure that the call did not report is raised here.
struct CudaCall {
  py::gil_scoped_release release;
  ~CudaCall() noexcept(false) {
    const cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess && std::uncaught_exceptions() == 0)
      throw svp::cuda::CudaError(std::string("CUDA error ") + cudaGetErrorName(err) + ": " +
                                 cudaGetErrorString(err));
  }
};
#else
using CudaCall = py::gil_scoped_release;
#endif

svp::cuda::DeviceMatrix device_view(std::uintptr_t ptr, int64_t rows, int64_t cols,
                                    int64_t row_stride, int dtype, int device,
                                    std::uintptr_t stream) {
  svp::cuda::DeviceMatrix X;
  X.data = reinterpret_cast<const void*>(ptr);
  X.rows = rows;
  X.cols = cols;
  X.row_stride = row_stride;
  SVP_CHECK_ARG(dtype >= 0 && dtype <= 3, "unknown dtype code %d", dtype);
  X.dtype = static_cast<svp::DType>(dtype);
  X.device = device;
  X.stream = stream;
  return X;
}

svp::cuda::KCenterCudaOptions cuda_kc_options(int metric, int64_t budget, std::uintptr_t sel_ptr,
                                              int64_t n_sel, int64_t start, int method,
                                              std::uintptr_t cells_ptr, int64_t n_cells,
                                              int64_t batch_candidates, int64_t batch_max_picks) {
  svp::cuda::KCenterCudaOptions opt;
  SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
  SVP_CHECK_ARG(method >= 0 && method <= 3, "unknown method code %d", method);
  opt.metric = static_cast<svp::Metric>(metric);
  opt.budget = budget;
  opt.already_selected = reinterpret_cast<const int64_t*>(sel_ptr);
  opt.n_selected = n_sel;
  opt.start = start;
  // lazy runs as the scan on the GPU
  opt.method = method == 2 ? svp::KCenterMethod::scan : static_cast<svp::KCenterMethod>(method);
  opt.batch_candidates = batch_candidates;
  opt.batch_max_picks = batch_max_picks;
  opt.cell_of = reinterpret_cast<const int64_t*>(cells_ptr);
  opt.n_cells = n_cells;
  return opt;
}

svp::KCenterGroups groups_view(int64_t n_groups, std::uintptr_t members_ptr,
                               std::uintptr_t offsets_ptr, std::uintptr_t budgets_ptr,
                               std::uintptr_t starts_ptr, std::uintptr_t selected_ptr,
                               std::uintptr_t selected_offsets_ptr, int64_t set_rows) {
  svp::KCenterGroups grp;
  grp.n_groups = n_groups;
  grp.members = reinterpret_cast<const int64_t*>(members_ptr);
  grp.offsets = reinterpret_cast<const int64_t*>(offsets_ptr);
  grp.budgets = reinterpret_cast<const int64_t*>(budgets_ptr);
  grp.starts = reinterpret_cast<const int64_t*>(starts_ptr);
  grp.selected = reinterpret_cast<const int64_t*>(selected_ptr);
  grp.selected_offsets = reinterpret_cast<const int64_t*>(selected_offsets_ptr);
  grp.set_rows = set_rows;
  return grp;
}
#endif

// The shard keeps the caller's buffers alive through `owner`.
struct PyShard {
  py::object owner;
  std::string simd, arg_name;
  std::unique_ptr<svp::KCenterShard> shard;
};

struct PyDecider {
  std::string simd;
  std::unique_ptr<svp::KCenterDecider> decider;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "svp_fast selection core (C++/OpenMP, optional CUDA). Use svp_fast's Python API.";
  py::register_exception<svp::ValueError>(m, "CoreValueError", PyExc_ValueError);
  // Keyword names: the Python backends call by keyword, so that an argument
  // out of place is a TypeError, and the CUDA stand-in of the tests can be
  // checked against these very signatures (python_tests/cuda_standin.py).
  m.def("kcenter_cpu", &kcenter_cpu, py::arg("ptr"), py::arg("rows"), py::arg("cols"),
        py::arg("row_stride"), py::arg("dtype"), py::arg("metric"), py::arg("budget"),
        py::arg("selected_ptr"), py::arg("n_selected"), py::arg("start"), py::arg("method"),
        py::arg("cells_ptr"), py::arg("n_cells"), py::arg("cell_copy_max_bytes"),
        py::arg("fallback_fraction"), py::arg("batch_candidates"), py::arg("batch_max_picks"),
        py::arg("num_threads"), py::arg("picks_ptr"),
        py::arg("radii_ptr"), py::arg("progress"), py::arg("poll_interval"), py::arg("simd"),
        py::arg("arg_name"), py::arg("resume") = py::none(), py::arg("snapshot") = py::none(),
        py::arg("prev_radius") = std::numeric_limits<double>::infinity(),
        py::arg("projection") = py::none());
  m.def("kcenter_groups_cpu", &kcenter_groups_cpu, py::arg("ptr"), py::arg("rows"),
        py::arg("cols"), py::arg("row_stride"), py::arg("dtype"), py::arg("metric"),
        py::arg("n_groups"), py::arg("members_ptr"), py::arg("offsets_ptr"),
        py::arg("budgets_ptr"), py::arg("starts_ptr"), py::arg("selected_ptr"),
        py::arg("selected_offsets_ptr"), py::arg("methods_ptr"), py::arg("cells_ptr"),
        py::arg("n_cells_ptr"), py::arg("set_rows"), py::arg("cell_copy_max_bytes"),
        py::arg("fallback_fraction"), py::arg("num_threads"), py::arg("picks_ptr"),
        py::arg("radii_ptr"), py::arg("progress"), py::arg("poll_interval"), py::arg("simd"),
        py::arg("arg_name"));
  m.def("uncertainty_scores_cpu", &uncertainty_scores_cpu);
  m.def("uncertainty_topk_cpu", &uncertainty_topk_cpu);
  m.def("uncertainty_keys_cpu", [](std::uintptr_t ptr, int64_t rows, int64_t cols,
                                   int64_t row_stride, int dtype, int method, int input,
                                   double probs_tolerance, bool exact, std::uintptr_t key_ptr,
                                   std::uintptr_t err_ptr, std::uintptr_t score_ptr,
                                   std::string simd) {
    svp::MatrixView X = view(ptr, rows, cols, row_stride, dtype);
    svp::UncertaintyOptions opt;
    SVP_CHECK_ARG(method >= 0 && method <= 2, "unknown method code %d", method);
    SVP_CHECK_ARG(input == 0 || input == 1, "unknown input code %d", input);
    opt.method = static_cast<svp::UncertaintyMethod>(method);
    opt.input = static_cast<svp::ScoreInput>(input);
    opt.probs_tolerance = probs_tolerance;
    opt.simd = simd.empty() ? nullptr : simd.c_str();
    py::gil_scoped_release nogil;
    svp::uncertainty_keys_cpu(X, opt, exact, reinterpret_cast<double*>(key_ptr),
                              reinterpret_cast<float*>(err_ptr), reinterpret_cast<double*>(score_ptr));
  });
  m.def("uncertainty_function_error", [](const std::string& isa, int which, double lo, double hi,
                                         int64_t stride, int threads) {
    svp::FunctionError e;
    {
      py::gil_scoped_release nogil;
      e = svp::uncertainty_function_error(isa.c_str(), which, lo, hi, stride, threads);
    }
    py::dict d;
    d["max_rel"] = e.max_rel;
    d["worst_at"] = e.worst_at;
    d["max_abs_tiny"] = e.max_abs_tiny;
    d["count"] = e.count;
    return d;
  });
  m.def("build_info", &build_info);
  m.def("measure_read_bandwidth", [](int64_t bytes, int threads, int repeats) {
    py::gil_scoped_release nogil;
    return svp::measure_read_bandwidth(bytes, threads, repeats);
  });
  m.def("shard_facts", &shard_facts);
  m.def("two_nearest_distances", [](std::uintptr_t x, int64_t n, int64_t D, int threads,
                                    std::uintptr_t r1, std::uintptr_t r2) {
    py::gil_scoped_release nogil;
    svp::two_nearest_distances(reinterpret_cast<const double*>(x), n, D, threads,
                               reinterpret_cast<double*>(r1), reinterpret_cast<double*>(r2));
  });
  m.def("product_tuning", []() {
    const svp::ProductTuning t = svp::product_tuning();
    return py::make_tuple(t.min_cols, t.min_centers, t.center_block);
  });
  m.def("set_product_tuning", [](int64_t min_cols, int64_t min_centers, int64_t center_block) {
    svp::ProductTuning t;
    t.min_cols = min_cols;
    t.min_centers = min_centers;
    t.center_block = center_block;
    const svp::ProductTuning old = svp::set_product_tuning(t);
    return py::make_tuple(old.min_cols, old.min_centers, old.center_block);
  }, py::arg("min_cols") = 0, py::arg("min_centers") = 0, py::arg("center_block") = 0);
  m.def("dot_block_kernel", [](std::uintptr_t rows, int64_t nr, int64_t D, int64_t row_stride,
                               int dtype, std::uintptr_t centers, int64_t nc,
                               const std::string& simd, std::uintptr_t out) {
    svp::MatrixView X;
    X.data = reinterpret_cast<const void*>(rows);
    X.rows = nr;
    X.cols = D;
    X.row_stride = row_stride;
    X.dtype = static_cast<svp::DType>(dtype);
    py::gil_scoped_release nogil;
    svp::dot_block_kernel(X, reinterpret_cast<const void*>(centers), nc, simd.c_str(),
                          reinterpret_cast<double*>(out));
  });
  m.def("measure_product_rate", [](int64_t D, bool float16, int threads, double seconds,
                                   bool per_cpu_second) {
    py::gil_scoped_release nogil;
    return svp::measure_product_rate(D, float16, threads, seconds, per_cpu_second);
  }, py::arg("D") = 2048, py::arg("float16") = true, py::arg("threads") = 0,
     py::arg("seconds") = 0.5, py::arg("per_cpu_second") = false);
  m.def("max2_kernel", [](std::uintptr_t m, int64_t n, const std::string& simd) {
    float out[2];
    svp::max2_kernel(reinterpret_cast<const float*>(m), n, simd.c_str(), out);
    return py::make_tuple(out[0], out[1]);
  });
#ifdef SVP_WITH_CUDA
  py::register_exception<svp::cuda::CudaError>(m, "CudaError", PyExc_RuntimeError);
  m.def("cuda_device_count", []() { return svp::cuda::device_count(); });
  m.def("cuda_device_name", [](int d) { return svp::cuda::device_name(d); });
  m.def("kcenter_cuda_workspace",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype, int device,
           int metric, int64_t budget, int64_t n_sel, int method, int64_t n_cells,
           int64_t batch_candidates, int batch_product) {
          auto X = device_view(ptr, rows, cols, row_stride, dtype, device, 0);
          auto opt = cuda_kc_options(metric, budget, 0, n_sel, 0, method, 0, n_cells,
                                     batch_candidates, 0);
          opt.batch_product = batch_product;
          CudaCall nogil;
          return svp::cuda::kcenter_cuda_workspace(X, opt);
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("dtype"),
        py::arg("device"), py::arg("metric"), py::arg("budget"), py::arg("n_selected"),
        py::arg("method"), py::arg("n_cells"), py::arg("batch_candidates"),
        py::arg("batch_product"));
  m.def("kcenter_cuda",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype, int device,
           std::uintptr_t stream, int metric, int64_t budget, std::uintptr_t sel_ptr, int64_t n_sel,
           int64_t start, int method, std::uintptr_t cells_ptr, int64_t n_cells,
           std::uintptr_t ws_ptr, int64_t ws_bytes, std::uintptr_t picks_ptr,
           std::uintptr_t radii_ptr, py::object progress, double poll_interval,
           std::string arg_name, double fallback_fraction, int64_t batch_candidates,
           int64_t batch_max_picks, int batch_product, double prev_radius) {
          auto X = device_view(ptr, rows, cols, row_stride, dtype, device, stream);
          auto opt = cuda_kc_options(metric, budget, sel_ptr, n_sel, start, method, cells_ptr,
                                     n_cells, batch_candidates, batch_max_picks);
          SVP_CHECK_ARG(batch_product >= 0 && batch_product <= 2, "unknown batch_product code %d",
                        batch_product);
          opt.batch_product = batch_product;
          opt.prev_radius = prev_radius;
          opt.fallback_fraction = fallback_fraction;
          opt.poll_interval = poll_interval;
          opt.arg_name = arg_name.c_str();
          PyProgress hook(std::move(progress));
          opt.progress = &hook;
          svp::KCenterStats stats;
          run_cancellable(hook, [&] {
            svp::cuda::kcenter_cuda(X, opt, reinterpret_cast<void*>(ws_ptr), ws_bytes,
                                    reinterpret_cast<int64_t*>(picks_ptr),
                                    reinterpret_cast<double*>(radii_ptr), &stats);
          });
          return stats_dict(stats);
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("dtype"),
        py::arg("device"), py::arg("stream"), py::arg("metric"), py::arg("budget"),
        py::arg("selected_ptr"), py::arg("n_selected"), py::arg("start"), py::arg("method"),
        py::arg("cells_ptr"), py::arg("n_cells"), py::arg("workspace_ptr"),
        py::arg("workspace_bytes"), py::arg("picks_ptr"), py::arg("radii_ptr"),
        py::arg("progress"), py::arg("poll_interval"), py::arg("arg_name"),
        py::arg("fallback_fraction"), py::arg("batch_candidates"), py::arg("batch_max_picks"),
        py::arg("batch_product"), py::arg("prev_radius"));
  m.def("cuda_set_cublas_library", [](const std::string& path) {
    std::string why;
    const bool ok = svp::cuda::set_cublas_library(path, &why);
    return py::make_tuple(ok, why);
  }, py::arg("path"));
  // grouped k-center: the group arrays are host int64 arrays (copied by the core)
  m.def("kcenter_groups_cuda_workspace",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype, int device,
           int metric, int64_t n_groups, std::uintptr_t members_ptr, std::uintptr_t offsets_ptr,
           std::uintptr_t budgets_ptr, std::uintptr_t starts_ptr, std::uintptr_t selected_ptr,
           std::uintptr_t selected_offsets_ptr, int64_t set_rows) {
          auto X = device_view(ptr, rows, cols, row_stride, dtype, device, 0);
          SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
          auto grp = groups_view(n_groups, members_ptr, offsets_ptr, budgets_ptr, starts_ptr,
                                 selected_ptr, selected_offsets_ptr, set_rows);
          svp::cuda::KCenterGroupsCudaOptions opt;
          opt.metric = static_cast<svp::Metric>(metric);
          CudaCall nogil;
          return svp::cuda::kcenter_groups_cuda_workspace(X, grp, opt);
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("dtype"),
        py::arg("device"), py::arg("metric"), py::arg("n_groups"), py::arg("members_ptr"),
        py::arg("offsets_ptr"), py::arg("budgets_ptr"), py::arg("starts_ptr"),
        py::arg("selected_ptr"), py::arg("selected_offsets_ptr"), py::arg("set_rows"));
  m.def("kcenter_groups_cuda",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype, int device,
           std::uintptr_t stream, int metric, int64_t n_groups, std::uintptr_t members_ptr,
           std::uintptr_t offsets_ptr, std::uintptr_t budgets_ptr, std::uintptr_t starts_ptr,
           std::uintptr_t selected_ptr, std::uintptr_t selected_offsets_ptr, int64_t set_rows,
           std::uintptr_t ws_ptr, int64_t ws_bytes, std::uintptr_t picks_ptr,
           std::uintptr_t radii_ptr, py::object progress, double poll_interval,
           std::string arg_name) {
          auto X = device_view(ptr, rows, cols, row_stride, dtype, device, stream);
          SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
          auto grp = groups_view(n_groups, members_ptr, offsets_ptr, budgets_ptr, starts_ptr,
                                 selected_ptr, selected_offsets_ptr, set_rows);
          svp::cuda::KCenterGroupsCudaOptions opt;
          opt.metric = static_cast<svp::Metric>(metric);
          opt.poll_interval = poll_interval;
          opt.arg_name = arg_name.c_str();
          PyProgress hook(std::move(progress));
          opt.progress = &hook;
          svp::KCenterStats total;
          std::vector<svp::KCenterStats> per(static_cast<size_t>(std::max<int64_t>(n_groups, 0)));
          run_cancellable(hook, [&] {
            svp::cuda::kcenter_groups_cuda(X, grp, opt, reinterpret_cast<void*>(ws_ptr), ws_bytes,
                                           reinterpret_cast<int64_t*>(picks_ptr),
                                           reinterpret_cast<double*>(radii_ptr), per.data(),
                                           &total);
          });
          return group_stats_dict(total, per);
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("dtype"),
        py::arg("device"), py::arg("stream"), py::arg("metric"), py::arg("n_groups"),
        py::arg("members_ptr"), py::arg("offsets_ptr"), py::arg("budgets_ptr"),
        py::arg("starts_ptr"), py::arg("selected_ptr"), py::arg("selected_offsets_ptr"),
        py::arg("set_rows"), py::arg("workspace_ptr"), py::arg("workspace_bytes"),
        py::arg("picks_ptr"), py::arg("radii_ptr"), py::arg("progress"),
        py::arg("poll_interval"), py::arg("arg_name"));
  py::class_<svp::cuda::KCenterShardCuda>(m, "KCenterShardCuda")
      .def(py::init([](py::object owner, std::uintptr_t ptr, int64_t rows, int64_t cols,
                       int64_t row_stride, int dtype, int metric, int method, std::uintptr_t,
                       int64_t, bool float64, int, std::string, std::string arg_name) {
             SVP_CHECK_ARG(method != 1, "the pruned method is not available for CUDA shards yet; "
                                        "use method='scan' or 'lazy' (both run the fused scan)");
             SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
             int device = 0;
             if (rows > 0) {
               cudaPointerAttributes attr;
               if (cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)) == cudaSuccess &&
                   attr.type == cudaMemoryTypeDevice)
                 device = attr.device;
               else
                 throw py::value_error("embeddings: the CUDA shard needs device memory");
             } else {
               cudaGetDevice(&device);
             }
             auto X = device_view(ptr, rows, cols, row_stride, dtype, device, 0);
             (void)owner;
             CudaCall nogil;
             return new svp::cuda::KCenterShardCuda(X, static_cast<svp::Metric>(metric), float64,
                                                    arg_name.c_str());
           }),
           py::keep_alive<1, 2>())
      .def_property_readonly("rows", &svp::cuda::KCenterShardCuda::rows)
      .def("exclude", [](svp::cuda::KCenterShardCuda& s, int64_t r) {
        CudaCall nogil;
        s.exclude(r);
      })
      .def("add_center", [](svp::cuda::KCenterShardCuda& s, std::uintptr_t raw, int64_t r) {
        CudaCall nogil;
        s.add_center(reinterpret_cast<const void*>(raw), r);
      })
      .def("top2", [](svp::cuda::KCenterShardCuda& s) {
        double v1, v2;
        int64_t i1, i2;
        {
          CudaCall nogil;
          s.top2(&v1, &i1, &v2, &i2);
        }
        return py::make_tuple(v1, i1, v2, i2);
      })
      .def("error_bound", &svp::cuda::KCenterShardCuda::error_bound)
      .def("exact_tolerance", &svp::cuda::KCenterShardCuda::exact_tolerance)
      .def("band", [](svp::cuda::KCenterShardCuda& s, double thr) {
        std::vector<int64_t> idx;
        std::vector<double> val;
        {
          CudaCall nogil;
          s.band(thr, &idx, &val);
        }
        return py::make_tuple(idx, val);
      })
      .def("exact_min", [](svp::cuda::KCenterShardCuda& s, std::uintptr_t raw_y, std::uintptr_t rows_ptr,
                           int64_t count) {
        CudaCall nogil;
        return s.exact_min(reinterpret_cast<const void*>(raw_y), reinterpret_cast<const int64_t*>(rows_ptr),
                           count);
      })
      .def_property_readonly("distance_evals", &svp::cuda::KCenterShardCuda::distance_evals)
      .def("offer",
           [](svp::cuda::KCenterShardCuda& s, int64_t T, int64_t global_offset, std::uintptr_t message) {
             CudaCall nogil;
             s.offer(T, global_offset, reinterpret_cast<void*>(message));
           },
           py::arg("T"), py::arg("global_offset"), py::arg("message_ptr"))
      .def("add_centers",
           [](svp::cuda::KCenterShardCuda& s, std::uintptr_t rows, std::uintptr_t local_rows, int64_t q) {
             CudaCall nogil;
             s.add_centers(reinterpret_cast<const void*>(rows),
                           reinterpret_cast<const int64_t*>(local_rows), q);
           },
           py::arg("rows_ptr"), py::arg("local_rows_ptr"), py::arg("q"));
  m.def("uncertainty_cuda_workspace",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype, int device,
           int64_t k) {
          auto X = device_view(ptr, rows, cols, row_stride, dtype, device, 0);
          CudaCall nogil;
          return svp::cuda::uncertainty_cuda_workspace(X, k);
        });
  m.def("uncertainty_cuda",
        [](std::uintptr_t ptr, int64_t rows, int64_t cols, int64_t row_stride, int dtype, int device,
           std::uintptr_t stream, int method, int input, bool check_finite, double tol,
           std::uintptr_t ws_ptr, int64_t ws_bytes, std::uintptr_t scores_ptr, int64_t k,
           std::uintptr_t order_ptr, std::uintptr_t top_ptr, std::string arg_name,
           bool want_stats) -> py::object {
          auto X = device_view(ptr, rows, cols, row_stride, dtype, device, stream);
          svp::cuda::UncertaintyCudaOptions opt;
          SVP_CHECK_ARG(method >= 0 && method <= 2, "unknown method code %d", method);
          SVP_CHECK_ARG(input == 0 || input == 1, "unknown input code %d", input);
          opt.method = static_cast<svp::UncertaintyMethod>(method);
          opt.input = static_cast<svp::ScoreInput>(input);
          opt.check_finite = check_finite;
          opt.probs_tolerance = tol;
          opt.arg_name = arg_name.c_str();
          svp::UncertaintyStats st;
          {
            CudaCall nogil;
            svp::cuda::uncertainty_cuda(X, opt, reinterpret_cast<void*>(ws_ptr), ws_bytes,
                                        reinterpret_cast<void*>(scores_ptr), k,
                                        reinterpret_cast<int64_t*>(order_ptr),
                                        reinterpret_cast<void*>(top_ptr), want_stats ? &st : nullptr);
          }
          if (!want_stats) return py::none();
          py::dict d;
          d["candidates"] = st.candidates;
          d["rows_refined"] = st.rows_refined;
          d["tie_groups"] = st.tie_groups;
          d["passes"] = st.passes;
          return d;
        },
        py::arg("ptr"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("dtype"),
        py::arg("device"), py::arg("stream"), py::arg("method"), py::arg("input"),
        py::arg("check_finite"), py::arg("tol"), py::arg("ws_ptr"), py::arg("ws_bytes"),
        py::arg("scores_ptr"), py::arg("k"), py::arg("order_ptr"), py::arg("top_ptr"),
        py::arg("arg_name"), py::arg("want_stats") = false);
#endif
  m.def("shard_needs_float64", &shard_needs_float64);
  py::class_<PyShard>(m, "KCenterShard")
      .def(py::init([](py::object owner, std::uintptr_t ptr, int64_t rows, int64_t cols,
                       int64_t row_stride, int dtype, int metric, int method,
                       std::uintptr_t cells_ptr, int64_t n_cells, int64_t cell_copy_max_bytes,
                       bool float64, int num_threads, std::string simd, std::string arg_name) {
        auto* p = new PyShard();
        p->owner = std::move(owner);
        p->simd = std::move(simd);
        p->arg_name = std::move(arg_name);
        svp::MatrixView X = view(ptr, rows, cols, row_stride, dtype);
        svp::ShardOptions opt;
        SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
        SVP_CHECK_ARG(method >= 0 && method <= 2, "unknown method code %d", method);
        opt.metric = static_cast<svp::Metric>(metric);
        opt.method = static_cast<svp::KCenterMethod>(method);
        opt.cells.cell_of = reinterpret_cast<const int64_t*>(cells_ptr);
        opt.cells.n_cells = n_cells;
        opt.cells.copy_max_bytes = cell_copy_max_bytes;
        opt.float64 = float64;
        opt.num_threads = num_threads;
        opt.simd = p->simd.empty() ? nullptr : p->simd.c_str();
        opt.arg_name = p->arg_name.c_str();
        {
          py::gil_scoped_release nogil;
          p->shard.reset(new svp::KCenterShard(X, opt));
        }
        return p;
      }))
      .def_property_readonly("rows", [](PyShard& s) { return s.shard->rows(); })
      .def("exclude", [](PyShard& s, int64_t r) { s.shard->exclude(r); })
      .def("add_center",
           [](PyShard& s, std::uintptr_t raw, int64_t local_row) {
             py::gil_scoped_release nogil;
             s.shard->add_center(reinterpret_cast<const void*>(raw), local_row);
           })
      .def("top2",
           [](PyShard& s) {
             svp::ShardCandidate a, b;
             {
               py::gil_scoped_release nogil;
               s.shard->top2(&a, &b);
             }
             return py::make_tuple(a.value, a.index, b.value, b.index);
           })
      .def("error_bound", [](PyShard& s, double v) { return s.shard->error_bound(v); })
      .def("exact_tolerance", [](PyShard& s, double v) { return s.shard->exact_tolerance(v); })
      .def("band",
           [](PyShard& s, double thr) {
             std::vector<svp::ShardBandMember> b;
             {
               py::gil_scoped_release nogil;
               b = s.shard->band(thr);
             }
             std::vector<int64_t> idx;
             std::vector<double> val;
             for (const auto& x : b) {
               idx.push_back(x.index);
               val.push_back(x.value);
             }
             return py::make_tuple(idx, val);
           })
      .def("exact_min",
           [](PyShard& s, std::uintptr_t raw_y, std::uintptr_t rows_ptr, int64_t count) {
             py::gil_scoped_release nogil;
             return s.shard->exact_min(reinterpret_cast<const void*>(raw_y),
                                       reinterpret_cast<const int64_t*>(rows_ptr), count);
           })
      .def_property_readonly("distance_evals", [](PyShard& s) { return s.shard->distance_evals(); })
      .def("offer",
           [](PyShard& s, int64_t T, int64_t global_offset, std::uintptr_t message) {
             py::gil_scoped_release nogil;
             return s.shard->offer(T, global_offset, reinterpret_cast<void*>(message));
           },
           py::arg("T"), py::arg("global_offset"), py::arg("message_ptr"))
      .def("add_centers",
           [](PyShard& s, std::uintptr_t rows, std::uintptr_t local_rows, int64_t q) {
             py::gil_scoped_release nogil;
             s.shard->add_centers(reinterpret_cast<const void*>(rows),
                                  reinterpret_cast<const int64_t*>(local_rows), q);
           },
           py::arg("rows_ptr"), py::arg("local_rows_ptr"), py::arg("q"));
  // The batched protocol's message layout (svp/shard.h, OfferLayout):
  // (bytes before the rows, bytes of one rank's offer).
  m.def("offer_layout", [](int64_t T, int64_t row_bytes) {
    SVP_CHECK_ARG(T >= 1 && row_bytes >= 1, "offer_layout needs T >= 1 and row_bytes >= 1");
    svp::OfferLayout L{T, row_bytes};
    return py::make_tuple(L.head_bytes(), L.bytes());
  });
  py::class_<PyDecider>(m, "KCenterDecider")
      .def(py::init([](int64_t cols, int dtype, int metric, bool float64, int num_threads,
                       std::string simd, int64_t capacity) {
             SVP_CHECK_ARG(dtype >= 0 && dtype <= 3, "unknown dtype code %d", dtype);
             SVP_CHECK_ARG(metric == 0 || metric == 1, "unknown metric code %d", metric);
             auto* p = new PyDecider();
             p->simd = std::move(simd);
             svp::ShardOptions opt;
             opt.metric = static_cast<svp::Metric>(metric);
             opt.float64 = float64;
             opt.num_threads = num_threads;
             opt.simd = p->simd.empty() ? nullptr : p->simd.c_str();
             p->decider.reset(
                 new svp::KCenterDecider(cols, static_cast<svp::DType>(dtype), opt, capacity));
             return p;
           }),
           py::arg("cols"), py::arg("dtype"), py::arg("metric"), py::arg("float64"),
           py::arg("num_threads"), py::arg("simd"), py::arg("capacity"))
      .def("add_centers",
           [](PyDecider& d, std::uintptr_t rows, int64_t q) {
             py::gil_scoped_release nogil;
             d.decider->add_centers(reinterpret_cast<const void*>(rows), q);
           },
           py::arg("rows_ptr"), py::arg("q"))
      .def_property_readonly("centers", [](PyDecider& d) { return d.decider->centers(); })
      .def("decide_pass",
           [](PyDecider& d, std::uintptr_t offers, int64_t world, int64_t T, int64_t remaining,
              int64_t cap, std::uintptr_t picks, std::uintptr_t slots, std::uintptr_t radii) {
             svp::PassDecision r;
             {
               py::gil_scoped_release nogil;
               r = d.decider->decide_pass(reinterpret_cast<const void*>(offers), world, T,
                                          remaining, cap, reinterpret_cast<int64_t*>(picks),
                                          reinterpret_cast<int64_t*>(slots),
                                          reinterpret_cast<double*>(radii));
             }
             return py::make_tuple(r.picks, r.thr);
           },
           py::arg("offers_ptr"), py::arg("world"), py::arg("T"), py::arg("remaining"),
           py::arg("cap"), py::arg("picks_ptr"), py::arg("slots_ptr"), py::arg("radii_ptr"))
      .def_property_readonly("ambiguous_steps",
                             [](PyDecider& d) { return d.decider->ambiguous_steps(); })
      .def_property_readonly("exact_distance_evals",
                             [](PyDecider& d) { return d.decider->exact_distance_evals(); })
      .def_property_readonly("candidate_evals",
                             [](PyDecider& d) { return d.decider->candidate_evals(); });
}
