// The mock runtime (mock_runtime.h). The functions with C linkage are
// exported from the test executable (-rdynamic) so that the cuBLAS stand-in,
// loaded with dlopen, binds to them as it would to the emulated runtime.
#include "mock_runtime.h"

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <utility>

#include "svp_emu/hooks.h"

namespace {

struct QueuedHostFunction {
  cudaStream_t stream;
  cudaHostFn_t fn;
  void* user_data;
};

std::deque<QueuedHostFunction>& queue() {
  static std::deque<QueuedHostFunction> q;
  return q;
}

cudaError_t next_launch_error = cudaSuccess;
cudaStream_t stream_of_last_launch = nullptr;
unsigned long long random_state = 0x1234567ull;
int diagnostics = 0;
std::string last_message;
int faults = 0;
cudaError_t fault_error = cudaSuccess;
std::string fault_message;

}  // namespace

extern "C" cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* userData) {
  if (next_launch_error != cudaSuccess) {
    const cudaError_t error = next_launch_error;
    next_launch_error = cudaSuccess;
    return error;
  }
  if (fn == nullptr) return cudaErrorInvalidValue;
  queue().push_back({stream, fn, userData});
  stream_of_last_launch = stream;
  return cudaSuccess;
}

extern "C" unsigned long long svp_emu_random_u64(void) {
  // splitmix64: reproducible from the seed
  unsigned long long z = (random_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

extern "C" void svp_emu_diagnostic(const char* message) {
  ++diagnostics;
  last_message = message ? message : "";
  if (std::getenv("EMU_TEST_VERBOSE")) std::fprintf(stderr, "[diagnostic] %s\n", last_message.c_str());
}

extern "C" void svp_emu_execution_fault(int cuda_error, const char* message) {
  ++faults;
  fault_error = static_cast<cudaError_t>(cuda_error);
  fault_message = message ? message : "";
  if (std::getenv("EMU_TEST_VERBOSE")) std::fprintf(stderr, "[fault %d] %s\n", cuda_error, fault_message.c_str());
}

namespace mock {

int flush() {
  int ran = 0;
  while (!queue().empty()) {
    QueuedHostFunction f = queue().front();
    queue().pop_front();
    f.fn(f.user_data);
    ++ran;
  }
  return ran;
}

int pending() { return static_cast<int>(queue().size()); }
cudaStream_t last_stream() { return stream_of_last_launch; }
void fail_next_launch(cudaError_t error) { next_launch_error = error; }
void seed_random(unsigned long long seed) { random_state = seed; }
int diagnostic_count() { return diagnostics; }
const std::string& last_diagnostic() { return last_message; }
int fault_count() { return faults; }
cudaError_t last_fault_error() { return fault_error; }
const std::string& last_fault() { return fault_message; }
void clear_diagnostics() {
  diagnostics = 0;
  last_message.clear();
  faults = 0;
  fault_error = cudaSuccess;
  fault_message.clear();
}

}  // namespace mock
