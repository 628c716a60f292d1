// Hooks of the emulated CUDA runtime (libsvp_cuda_emu) that the emulated
// libraries (the CUB subset in include/cub/, the cuBLAS stand-in in cublas/)
// call. C linkage, so that a library loaded with dlopen binds to them by name.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// The runtime's seeded, reproducible stream of random numbers. The emulated
// libraries draw from it only on the calling (host) thread, at enqueue time,
// so that a seed fixes their choices whatever the order in which the streams'
// worker threads run.
unsigned long long svp_emu_random_u64(void);

// A detail the runtime attaches to the next error it reports (and prints to
// stderr at once): the emulated libraries call it just before they return an
// error, with what exactly was wrong.
void svp_emu_diagnostic(const char* message);

// Optional (a weak reference: null where the runtime does not define it).
// Work already enqueued found its arguments invalid when the stream ran it
// (segment offsets out of range, outputs overlapping inputs as the stream's
// data decided): the runtime makes `cuda_error` (a cudaError_t value) the
// device's sticky error with `message` as its report, as for a faulting
// kernel. Where it is not defined, the libraries call svp_emu_diagnostic.
void svp_emu_execution_fault(int cuda_error, const char* message) __attribute__((weak));

#ifdef __cplusplus
}
#endif
