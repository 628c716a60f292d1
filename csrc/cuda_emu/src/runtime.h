// Internal interfaces of the emulation: its settings, the device model, the
// stream machinery (runtime_api.cpp) and the grid engine (engine.cpp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "svp_emu/launch.h"

namespace svp_emu {

// Settings, read once from the environment (README.md lists them).
struct Options {
  uint64_t seed = 1;            // SVP_EMU_SEED: thread order between barriers, atomics' interleaving
  int sms = 2;                  // SVP_EMU_SMS: modelled multiprocessors (the H200 has 132)
  size_t stack_bytes = 64 << 10;  // SVP_EMU_STACK_KB: stack of each emulated thread
  double hang_seconds = 120.0;  // SVP_EMU_HANG_SECONDS: a grid without progress this long is reported
  unsigned switch_odds = 8;     // at an atomic or fence, 1 in N: run another thread of the block
  unsigned preempt_odds = 64;   // at an atomic or fence, 1 in N: run another resident block
  int max_resident = 32;        // SVP_EMU_MAX_RESIDENT: blocks resident at once in an ordinary launch
  bool quiet = false;           // SVP_EMU_QUIET=1: no report on stderr
  // SVP_EMU_SLOT_EXIT_PAUSE_US (the emulator's own tests): a slot thread
  // leaving a grid pauses this long between counting itself out and waking
  // the stream's thread, widening the window in which that thread may return
  int slot_exit_pause_us = 0;
};
Options& options();

// The modelled device: an NVIDIA H200 (sm_90) with options().sms multiprocessors.
struct DeviceModel {
  static constexpr int kMaxThreadsPerBlock = 1024;
  static constexpr int kMaxThreadsPerSM = 2048;
  static constexpr int kMaxBlocksPerSM = 32;
  static constexpr int kRegistersPerSM = 65536;
  static constexpr int kRegistersPerBlock = 65536;
  static constexpr int kSharedPerBlockDefault = 48 << 10;
  static constexpr int kSharedPerBlockOptin = 232448;  // 227 KB
  static constexpr int kSharedPerSM = 233472;          // 228 KB
  static constexpr int kReservedSharedPerBlock = 1024;
  static constexpr long long kGlobalMemory = 150754820096LL;  // 140.4 GiB, as an H200 reports
};

// Blocks of `kernel` resident per multiprocessor with this block size and
// dynamic shared memory (CUDA's own occupancy calculator, cuda_occupancy.h,
// on the modelled device); 0 when one block does not fit.
int blocks_per_sm(const KernelInfo& kernel, int threads, size_t dynamic_smem);

// One kernel launch, as the stream executes it.
struct GridLaunch {
  KernelInfo* kernel = nullptr;
  dim3 grid, block;
  size_t dynamic_smem = 0;
  bool cooperative = false;
  std::unique_ptr<KernelBody> body;
  uint64_t launch_no = 0;
};

// Runs the grid to its end on the calling thread's behalf (engine.cpp).
// Returns cudaSuccess, or the error with a report in *detail.
cudaError_t run_grid(GridLaunch& launch, std::string* detail);

// A seeded random number for the CUB and cuBLAS stand-ins.
uint64_t next_random();

// Formats like printf into a std::string.
std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace svp_emu
