// A mock of the few runtime calls the emulated CUB and cuBLAS use, for their
// host tests: cudaLaunchHostFunc queues the work (run when a test flushes,
// so that a test sees what the stream reads at execution time rather than at
// the call), svp_emu_random_u64 draws from a fixed seed, svp_emu_diagnostic
// keeps the messages.
#pragma once

#include <cuda_runtime.h>

#include <string>

namespace mock {

// Runs the queued host functions in order; returns how many ran.
int flush();
// How many host functions are queued.
int pending();
// The stream the last queued (or run) host function was enqueued on.
cudaStream_t last_stream();
// Makes the next cudaLaunchHostFunc fail with `error` (and queue nothing).
void fail_next_launch(cudaError_t error);

void seed_random(unsigned long long seed);

// The diagnostics received since the last clear.
int diagnostic_count();
const std::string& last_diagnostic();
// The execution faults (svp_emu_execution_fault) received since the last
// clear: how many, the last one's error and report.
int fault_count();
cudaError_t last_fault_error();
const std::string& last_fault();
void clear_diagnostics();  // and the faults

}  // namespace mock
