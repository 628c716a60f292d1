// The scheduler's entry points that the device language (device.h) calls;
// implemented in csrc/cuda_emu/src/engine.cpp. No macros here, so the
// runtime can include it too.
#pragma once

#include <cstring>
#include <type_traits>

#include <vector_types.h>

namespace svp_emu {

// What a running CUDA thread sees of itself; the scheduler keeps one per fiber.
struct ThreadView {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};

// The running fiber's view (null outside kernels).
ThreadView* current_view();
[[noreturn]] void outside_kernel(const char* what, const char* file, int line);

inline const ThreadView& view(const char* what, const char* file, int line) {
  ThreadView* v = current_view();
  if (!v) outside_kernel(what, file, line);
  return *v;
}

enum class Collective : int { shfl_idx, shfl_up, shfl_down, shfl_xor, ballot, any, all, syncwarp };

void syncthreads(const char* file, int line);
unsigned long long warp_collective(Collective kind, unsigned mask, unsigned long long value, int param,
                                   int width, const char* file, int line);
void grid_sync(const char* file, int line);
bool launched_cooperatively();
void fence(const char* file, int line);
void sleep_yield(unsigned ns, const char* file, int line);
void atomic_point(const char* file, int line);
unsigned char* dynamic_shared_memory();

template <typename T>
inline unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move up to 64 bits");
  unsigned long long b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
inline T from_bits(unsigned long long b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace svp_emu
