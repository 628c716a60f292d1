// The part of cooperative groups the kernels use, for the CPU emulation
// (shadows CUDA's header when csrc/cuda_emu/include comes first on the path).
// grid.sync() is a barrier of every thread of the grid: reached at one call
// site by all of them, in a launch made with cudaLaunchCooperativeKernel
// (otherwise the emulator reports the launch as failed, where a GPU would
// hang or misbehave).
#pragma once

#include "svp_emu/scheduler_api.h"

namespace cooperative_groups {

class grid_group {
 public:
  void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    ::svp_emu::grid_sync(file, line);
  }
  bool is_valid() const { return ::svp_emu::launched_cooperatively(); }
  unsigned long long num_threads() const {
    const ::svp_emu::ThreadView& v = ::svp_emu::view("grid_group", __FILE__, __LINE__);
    return 1ull * v.grid_dim.x * v.grid_dim.y * v.grid_dim.z * v.block_dim.x * v.block_dim.y * v.block_dim.z;
  }
  unsigned long long thread_rank() const {
    const ::svp_emu::ThreadView& v = ::svp_emu::view("grid_group", __FILE__, __LINE__);
    const unsigned long long block = (1ull * v.block_idx.z * v.grid_dim.y + v.block_idx.y) * v.grid_dim.x + v.block_idx.x;
    const unsigned long long in_block = (1ull * v.thread_idx.z * v.block_dim.y + v.thread_idx.y) * v.block_dim.x + v.thread_idx.x;
    return block * v.block_dim.x * v.block_dim.y * v.block_dim.z + in_block;
  }
};

inline grid_group this_grid() { return grid_group(); }

class thread_block {
 public:
  void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    ::svp_emu::syncthreads(file, line);
  }
};

inline thread_block this_thread_block() { return thread_block(); }

}  // namespace cooperative_groups
