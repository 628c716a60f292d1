// The device side of the CUDA language for the CPU emulation (csrc/cuda_emu).
//
// Force-included (-include svp_emu/device.h) into every translation unit of
// csrc/cuda/ when the project is built with SVP_FAST_CUDA=EMU. The sources are
// compiled by the host C++ compiler against the real CUDA headers (types,
// cuda_fp16.h, cuda_bf16.h, the runtime API declarations, which the emulation
// implements in libsvp_cuda_emu) plus what is defined here:
//   - __shared__ is thread_local: every resident block runs on an OS thread of
//     its own, so a block-scope thread_local is one object per block;
//   - threadIdx, blockIdx, blockDim, gridDim read the running fiber's view;
//   - barriers, warp collectives, fences and atomics call into the scheduler,
//     which checks them as the hardware's rules demand (masks, call sites,
//     exited threads) and reports a violation as a failed launch that names
//     the kernel, the block, the thread and the source line.
// Every intrinsic takes its caller's file and line (default arguments from
// __builtin_FILE/__builtin_LINE), so a report points at the kernel's source.
#pragma once

#ifndef SVP_CUDA_EMULATION
#define SVP_CUDA_EMULATION 1
#endif

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <math.h>  // libstdc++'s math.h puts the float overloads (sqrt(float), ...) in the global namespace, as CUDA does

#include <cstdint>
#include <cstring>
#include <type_traits>

// ------------------------------------------------------------ qualifiers --

#undef __shared__
#define __shared__ thread_local
#undef __launch_bounds__
#define __launch_bounds__(...)
#ifndef __align__
#define __align__(n) alignas(n)
#endif

// -------------------------------------------------------- the scheduler --

#define SVP_EMU_SITE const char *svp_site_file = __builtin_FILE(), int svp_site_line = __builtin_LINE()

#include "svp_emu/scheduler_api.h"

#define threadIdx (::svp_emu::view("threadIdx", __FILE__, __LINE__).thread_idx)
#define blockIdx (::svp_emu::view("blockIdx", __FILE__, __LINE__).block_idx)
#define blockDim (::svp_emu::view("blockDim", __FILE__, __LINE__).block_dim)
#define gridDim (::svp_emu::view("gridDim", __FILE__, __LINE__).grid_dim)
constexpr int warpSize = 32;

// Dynamic shared memory: `extern __shared__ T name[]` in CUDA (see
// csrc/cuda/common.cuh, SVP_DYNAMIC_SHARED): here the block's buffer of the
// size the launch asked for, so that a read or write past it is caught.
#define SVP_EMU_DYNAMIC_SHARED(type, name) \
  type* const name = reinterpret_cast<type*>(::svp_emu::dynamic_shared_memory())

// Device-only functions (nvcc refuses them in host code): called outside a
// kernel, the emulation stops with the call site, as nvcc would at compile
// time (checked where it costs nothing: not in the bit casts of hot loops;
// the real nvcc build of CI is the full check).
#define SVP_EMU_DEVICE_ONLY(name) \
  if (!::svp_emu::current_view()) ::svp_emu::outside_kernel(name, svp_site_file, svp_site_line)

// ------------------------------------------------------------- barriers --

inline void __syncthreads(SVP_EMU_SITE) { ::svp_emu::syncthreads(svp_site_file, svp_site_line); }

inline void __syncwarp(unsigned mask = 0xffffffffu, SVP_EMU_SITE) {
  ::svp_emu::warp_collective(::svp_emu::Collective::syncwarp, mask, 0, 0, 32, svp_site_file,
                             svp_site_line);
}

// ------------------------------------------------------ warp collectives --

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32, SVP_EMU_SITE) {
  return ::svp_emu::from_bits<T>(::svp_emu::warp_collective(::svp_emu::Collective::shfl_idx, mask,
                                                            ::svp_emu::to_bits(var), src_lane, width,
                                                            svp_site_file, svp_site_line));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32, SVP_EMU_SITE) {
  return ::svp_emu::from_bits<T>(::svp_emu::warp_collective(::svp_emu::Collective::shfl_up, mask,
                                                            ::svp_emu::to_bits(var), static_cast<int>(delta),
                                                            width, svp_site_file, svp_site_line));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32, SVP_EMU_SITE) {
  return ::svp_emu::from_bits<T>(::svp_emu::warp_collective(::svp_emu::Collective::shfl_down, mask,
                                                            ::svp_emu::to_bits(var), static_cast<int>(delta),
                                                            width, svp_site_file, svp_site_line));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32, SVP_EMU_SITE) {
  return ::svp_emu::from_bits<T>(::svp_emu::warp_collective(::svp_emu::Collective::shfl_xor, mask,
                                                            ::svp_emu::to_bits(var), lane_mask, width,
                                                            svp_site_file, svp_site_line));
}
inline unsigned __ballot_sync(unsigned mask, int predicate, SVP_EMU_SITE) {
  return static_cast<unsigned>(::svp_emu::warp_collective(::svp_emu::Collective::ballot, mask,
                                                          predicate != 0, 0, 32, svp_site_file,
                                                          svp_site_line));
}
inline int __any_sync(unsigned mask, int predicate, SVP_EMU_SITE) {
  return static_cast<int>(::svp_emu::warp_collective(::svp_emu::Collective::any, mask, predicate != 0,
                                                     0, 32, svp_site_file, svp_site_line));
}
inline int __all_sync(unsigned mask, int predicate, SVP_EMU_SITE) {
  return static_cast<int>(::svp_emu::warp_collective(::svp_emu::Collective::all, mask, predicate != 0,
                                                     0, 32, svp_site_file, svp_site_line));
}

// ------------------------------------------------------ memory ordering --

inline void __threadfence(SVP_EMU_SITE) { ::svp_emu::fence(svp_site_file, svp_site_line); }
inline void __threadfence_block(SVP_EMU_SITE) { ::svp_emu::fence(svp_site_file, svp_site_line); }
inline void __nanosleep(unsigned ns, SVP_EMU_SITE) { ::svp_emu::sleep_yield(ns, svp_site_file, svp_site_line); }

// Cache-hinted loads: plain loads here (every load sees memory as it is:
// there are no caches to go stale; see the README on what is not modelled).
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldca(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcs(const T* p) {
  return *p;
}

// ------------------------------------------------- bits and conversions --

inline float __uint_as_float(unsigned int x, SVP_EMU_SITE) {
  return ::svp_emu::from_bits<float>(x);
}
inline unsigned int __float_as_uint(float x, SVP_EMU_SITE) {
  return static_cast<unsigned>(::svp_emu::to_bits(x));
}
inline float __int_as_float(int x) { return ::svp_emu::from_bits<float>(static_cast<unsigned>(x)); }
inline int __float_as_int(float x) { return static_cast<int>(::svp_emu::to_bits(x)); }
inline long long __double_as_longlong(double x, SVP_EMU_SITE) {
  return static_cast<long long>(::svp_emu::to_bits(x));
}
inline double __longlong_as_double(long long x, SVP_EMU_SITE) {
  return ::svp_emu::from_bits<double>(static_cast<unsigned long long>(x));
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }

// -------------------------------------------------------------- atomics --
// CUDA's overload set (so that overload resolution is the device compiler's).
// Each atomic is also a point where the scheduler may switch to another
// thread or block, so that the order of atomics differs between seeds.

namespace svp_emu {
template <typename T>
inline T atomic_rmw_float(T* address, T operand, SVP_EMU_SITE) {
  atomic_point(svp_site_file, svp_site_line);
  using U = std::conditional_t<sizeof(T) == 4, unsigned, unsigned long long>;
  U* a = reinterpret_cast<U*>(address);
  U old = __atomic_load_n(a, __ATOMIC_SEQ_CST);
  for (;;) {
    T o;
    std::memcpy(&o, &old, sizeof(T));
    const T n = o + operand;
    U nb;
    std::memcpy(&nb, &n, sizeof(T));
    if (__atomic_compare_exchange_n(a, &old, nb, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return o;
  }
}
template <typename T>
inline T atomic_min(T* a, T v, const char* file, int line) {
  atomic_point(file, line);
  T old = __atomic_load_n(a, __ATOMIC_SEQ_CST);
  while (v < old && !__atomic_compare_exchange_n(a, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
template <typename T>
inline T atomic_max(T* a, T v, const char* file, int line) {
  atomic_point(file, line);
  T old = __atomic_load_n(a, __ATOMIC_SEQ_CST);
  while (v > old && !__atomic_compare_exchange_n(a, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
}  // namespace svp_emu

#define SVP_EMU_ATOMIC_INT(T)                                                                      \
  inline T atomicAdd(T* a, T v, SVP_EMU_SITE) {                                                    \
    ::svp_emu::atomic_point(svp_site_file, svp_site_line);                                         \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                             \
  }                                                                                                \
  inline T atomicExch(T* a, T v, SVP_EMU_SITE) {                                                   \
    ::svp_emu::atomic_point(svp_site_file, svp_site_line);                                         \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                            \
  }                                                                                                \
  inline T atomicCAS(T* a, T compare, T v, SVP_EMU_SITE) {                                         \
    ::svp_emu::atomic_point(svp_site_file, svp_site_line);                                         \
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);        \
    return compare;                                                                                \
  }                                                                                                \
  inline T atomicMin(T* a, T v, SVP_EMU_SITE) {                                                    \
    return ::svp_emu::atomic_min(a, v, svp_site_file, svp_site_line);                              \
  }                                                                                                \
  inline T atomicMax(T* a, T v, SVP_EMU_SITE) {                                                    \
    return ::svp_emu::atomic_max(a, v, svp_site_file, svp_site_line);                              \
  }                                                                                                \
  inline T atomicAnd(T* a, T v, SVP_EMU_SITE) {                                                    \
    ::svp_emu::atomic_point(svp_site_file, svp_site_line);                                         \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                             \
  }                                                                                                \
  inline T atomicOr(T* a, T v, SVP_EMU_SITE) {                                                     \
    ::svp_emu::atomic_point(svp_site_file, svp_site_line);                                         \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                              \
  }                                                                                                \
  inline T atomicXor(T* a, T v, SVP_EMU_SITE) {                                                    \
    ::svp_emu::atomic_point(svp_site_file, svp_site_line);                                         \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                             \
  }

SVP_EMU_ATOMIC_INT(int)
SVP_EMU_ATOMIC_INT(unsigned int)
SVP_EMU_ATOMIC_INT(unsigned long long int)
#undef SVP_EMU_ATOMIC_INT

// CUDA has no atomicAdd/Exch on long long, but min and max
inline long long atomicMin(long long* a, long long v, SVP_EMU_SITE) {
  return ::svp_emu::atomic_min(a, v, svp_site_file, svp_site_line);
}
inline long long atomicMax(long long* a, long long v, SVP_EMU_SITE) {
  return ::svp_emu::atomic_max(a, v, svp_site_file, svp_site_line);
}
inline int atomicSub(int* a, int v, SVP_EMU_SITE) {
  ::svp_emu::atomic_point(svp_site_file, svp_site_line);
  return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);
}
inline unsigned atomicSub(unsigned* a, unsigned v, SVP_EMU_SITE) {
  ::svp_emu::atomic_point(svp_site_file, svp_site_line);
  return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);
}
inline float atomicAdd(float* a, float v, SVP_EMU_SITE) {
  return ::svp_emu::atomic_rmw_float(a, v, svp_site_file, svp_site_line);
}
inline double atomicAdd(double* a, double v, SVP_EMU_SITE) {
  return ::svp_emu::atomic_rmw_float(a, v, svp_site_file, svp_site_line);
}
inline float atomicExch(float* a, float v, SVP_EMU_SITE) {
  unsigned old = atomicExch(reinterpret_cast<unsigned*>(a), __float_as_uint(v), svp_site_file, svp_site_line);
  return __uint_as_float(old);
}

// float64 -> float32 rounded towards +inf (exactly: the nearest float, moved up
// one step when it lies below)
inline float __double2float_ru(double x, SVP_EMU_SITE) {
  SVP_EMU_DEVICE_ONLY("__double2float_ru");
  float f = static_cast<float>(x);
  if (static_cast<double>(f) < x) f = nextafterf(f, INFINITY);
  return f;
}
inline float __double2float_rd(double x, SVP_EMU_SITE) {
  SVP_EMU_DEVICE_ONLY("__double2float_rd");
  float f = static_cast<float>(x);
  if (static_cast<double>(f) > x) f = nextafterf(f, -INFINITY);
  return f;
}
inline float __double2float_rn(double x, SVP_EMU_SITE) {
  SVP_EMU_DEVICE_ONLY("__double2float_rn");
  return static_cast<float>(x);
}

// ------------------------------------------------------------------ math --
// CUDA's device min/max overloads (the usual arithmetic conversions).
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
}
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}
