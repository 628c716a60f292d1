// svp_fast._emu_selftest: the planted-mistake kernels of tests/planted.cu,
// one case per call, and the emulator's controls (seed, modelled SMs, reset),
// for python_tests/test_cuda_emulator.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime.h>

#include <string>
#include <vector>

namespace svp_emu_selftest {
struct Outcome {
  std::string error, message;
  std::vector<double> values;
};
Outcome run_case(const std::string& name);
std::vector<std::string> case_names();
}  // namespace svp_emu_selftest

extern "C" {
int svp_emu_set_sm_count(int sms);
int svp_emu_sm_count(void);
unsigned long long svp_emu_seed(void);
void svp_emu_set_seed(unsigned long long seed);
}

namespace py = pybind11;

PYBIND11_MODULE(_emu_selftest, m) {
  m.doc() = "The CUDA emulator's own tests: kernels with planted mistakes (tests/planted.cu).";
  m.def(
      "run",
      [](const std::string& name) {
        svp_emu_selftest::Outcome o;
        {
          py::gil_scoped_release release;
          o = svp_emu_selftest::run_case(name);
        }
        py::dict d;
        d["error"] = o.error;
        d["message"] = o.message;
        d["values"] = o.values;
        return d;
      },
      py::arg("name"), "Runs one planted case: {'error', 'message', 'values'}.");
  m.def("cases", &svp_emu_selftest::case_names);
  m.def("reset", [] { return std::string(cudaGetErrorName(cudaDeviceReset())); },
        "cudaDeviceReset: clears the sticky error a failed kernel leaves.");
  m.def("set_sm_count", &svp_emu_set_sm_count, py::arg("sms"));
  m.def("sm_count", &svp_emu_sm_count);
  m.def("seed", &svp_emu_seed);
  m.def("set_seed", &svp_emu_set_seed, py::arg("seed"));
}
