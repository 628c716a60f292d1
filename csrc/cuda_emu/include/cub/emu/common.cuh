// What the emulated CUB device algorithms share (csrc/cuda_emu/include/cub/).
//
// The project's CUB calls follow CUB's two-phase protocol: a first call with
// d_temp_storage == nullptr asks for the temporary storage size, a second one
// with the storage enqueues the work on a stream. Here the work is host code
// enqueued with cudaLaunchHostFunc, so it runs in stream order on the
// emulator's worker threads and reads its inputs when the stream reaches it,
// as a kernel would. Before it computes it fills the whole temporary storage
// with 0xCB: real CUB uses that storage as scratch, so a caller that keeps
// live data in it must see it destroyed here too.
//
// Everything lives in cub::emu so that no name collides with the project's
// own or with the device language of svp_emu/device.h (force-included before
// these headers; it defines threadIdx & co. as macros and global min/max).
#pragma once

#include <cuda_runtime.h>

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "svp_emu/hooks.h"

namespace cub {
namespace emu {

// ------------------------------------------------------------ diagnostics --

// Formats a message and hands it to the runtime's diagnostic hook.
inline void diagnose(const char* format, va_list args) {
  char message[1024];
  std::vsnprintf(message, sizeof(message), format, args);
  svp_emu_diagnostic(message);
}

// Rejects a call: the diagnostic, then the error CUB returns for bad
// arguments (cudaErrorInvalidValue), nothing enqueued.
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
inline cudaError_t reject(const char* format, ...) {
  va_list args;
  va_start(args, format);
  diagnose(format, args);
  va_end(args);
  return cudaErrorInvalidValue;
}

// Work already enqueued found its arguments invalid (segment offsets or
// overlaps known only when the stream reaches it). A GPU would fault or
// write garbage; here the work writes nothing, and the runtime makes `error`
// the device's sticky error (svp_emu_execution_fault, where defined).
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
inline void report_execution_fault(cudaError_t error, const char* format, ...) {
  char message[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  if (svp_emu_execution_fault) {
    svp_emu_execution_fault(static_cast<int>(error), message);
  } else {
    svp_emu_diagnostic(message);
  }
}

// --------------------------------------------------- temp storage sizes --

// CUB carves its temporary storage into allocations, each rounded up to 256
// bytes, plus 255 bytes to align the base (cub::detail::AliasTemporaries).
// The sizes asked for here follow the same rule, with allocations of the
// sizes CUB's algorithms need, so they grow with num_items as CUB's do.
class TempStorageSize {
 public:
  static constexpr size_t kAlignment = 256;

  TempStorageSize& allocation(size_t bytes) {
    total_ += (bytes + kAlignment - 1) / kAlignment * kAlignment;
    return *this;
  }
  size_t bytes() const { return total_ + kAlignment - 1; }

 private:
  size_t total_ = 0;
};

// The tile status words of a decoupled look-back pass (scan, select):
// 16 bytes per tile, plus the 32 padding tiles CUB keeps before the first.
inline size_t tile_status_bytes(long long num_items, long long items_per_tile = 1024) {
  const long long tiles = (num_items + items_per_tile - 1) / items_per_tile;
  return static_cast<size_t>(tiles + 32) * 16;
}

// Checks the caller's temporary storage against what the algorithm needs.
// Returns false when the call is over: a size query answered (result =
// cudaSuccess) or storage too small (result = cudaErrorInvalidValue).
inline bool temp_storage_ready(const char* algorithm, void* d_temp_storage, size_t& temp_storage_bytes,
                               size_t required_bytes, cudaError_t& result) {
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = required_bytes;
    result = cudaSuccess;
    return false;
  }
  if (temp_storage_bytes < required_bytes) {
    result = reject("%s: temp_storage_bytes = %zu is smaller than the %zu bytes this call requires "
                    "(ask for the size with d_temp_storage = nullptr and the same arguments)",
                    algorithm, temp_storage_bytes, required_bytes);
    return false;
  }
  result = cudaSuccess;
  return true;
}

// ---------------------------------------------------------------- counts --

// num_items as a non-negative long long; false when negative or too large.
template <typename NumItemsT>
inline bool item_count(NumItemsT num_items, long long& count) {
  static_assert(std::is_integral<NumItemsT>::value, "num_items must be of an integral type");
  if (std::is_signed<NumItemsT>::value) {
    if (static_cast<long long>(num_items) < 0) return false;
  } else if (static_cast<unsigned long long>(num_items) >
             static_cast<unsigned long long>(std::numeric_limits<long long>::max())) {
    return false;
  }
  count = static_cast<long long>(num_items);
  return true;
}

// ---------------------------------------------------------------- ranges --

// The bytes an argument covers, for the overlap checks. Iterators that are
// not pointers (counting iterators, transform iterators) cover nothing
// checkable and get an empty range.
struct ByteRange {
  const char* name = "";
  uintptr_t begin = 0;
  size_t bytes = 0;
  bool written = false;  // the algorithm writes it (an output or the temp storage)
};

template <typename IteratorT>
inline ByteRange byte_range(const char* name, IteratorT it, long long count, bool written) {
  ByteRange r;
  r.name = name;
  r.written = written;
  if constexpr (std::is_pointer<IteratorT>::value) {
    using Element = std::remove_cv_t<std::remove_pointer_t<IteratorT>>;
    if (it != nullptr && count > 0) {
      r.begin = reinterpret_cast<uintptr_t>(it);
      r.bytes = static_cast<size_t>(count) * sizeof(Element);
    }
  }
  return r;
}

inline bool ranges_overlap(const ByteRange& a, const ByteRange& b) {
  if (a.bytes == 0 || b.bytes == 0) return false;
  return a.begin < b.begin + b.bytes && b.begin < a.begin + a.bytes;
}

// Finds a written range that overlaps any other range (CUB forbids it for
// every algorithm here, except where the caller removed an allowed alias
// from the list). Returns false when there is none.
inline bool find_write_conflict(std::initializer_list<ByteRange> ranges, ByteRange& written,
                                ByteRange& other) {
  for (auto a = ranges.begin(); a != ranges.end(); ++a) {
    for (auto b = a + 1; b != ranges.end(); ++b) {
      if ((a->written || b->written) && ranges_overlap(*a, *b)) {
        written = a->written ? *a : *b;
        other = a->written ? *b : *a;
        return true;
      }
    }
  }
  return false;
}

// Rejects (with the diagnostic) a call whose ranges overlap where CUB
// forbids it; cudaSuccess when they do not.
inline cudaError_t reject_overlaps(const char* algorithm, std::initializer_list<ByteRange> ranges) {
  ByteRange written, other;
  if (!find_write_conflict(ranges, written, other)) return cudaSuccess;
  return reject("%s: %s [%p, +%zu bytes) overlaps %s [%p, +%zu bytes); CUB does not allow these "
                "ranges to overlap (no in-place operation)",
                algorithm, written.name, reinterpret_cast<void*>(written.begin), written.bytes,
                other.name, reinterpret_cast<void*>(other.begin), other.bytes);
}

// Same check at execution time (ranges whose size the stream decides).
inline bool execution_overlaps(const char* algorithm, std::initializer_list<ByteRange> ranges) {
  ByteRange written, other;
  if (!find_write_conflict(ranges, written, other)) return false;
  report_execution_fault(cudaErrorLaunchFailure,
                         "%s (executing on its stream): %s [%p, +%zu bytes) overlaps %s [%p, +%zu "
                         "bytes); nothing was written",
                         algorithm, written.name, reinterpret_cast<void*>(written.begin),
                         written.bytes, other.name, reinterpret_cast<void*>(other.begin),
                         other.bytes);
  return true;
}

// --------------------------------------------------------- stream work --

// One enqueued algorithm: owns copies of all its arguments (the caller's
// variables may be gone when the stream runs it).
class HostWork {
 public:
  HostWork(const char* algorithm, void* d_temp_storage, size_t temp_storage_bytes)
      : algorithm_(algorithm), temp_storage_(d_temp_storage), temp_storage_bytes_(temp_storage_bytes) {}
  virtual ~HostWork() = default;

  // Scribbles over the temp storage, then computes.
  void run() {
    std::memset(temp_storage_, 0xCB, temp_storage_bytes_);
    execute();
  }
  const char* algorithm() const { return algorithm_; }

 protected:
  virtual void execute() = 0;

  // The temp storage as a range, for the overlap checks made on the stream.
  ByteRange temp_storage_range() const {
    return byte_range("d_temp_storage", static_cast<unsigned char*>(temp_storage_),
                      static_cast<long long>(temp_storage_bytes_), true);
  }

 private:
  const char* algorithm_;
  void* temp_storage_;
  size_t temp_storage_bytes_;
};

// The cudaHostFn_t of every enqueued algorithm: runs it and frees it. No
// exception may leave a host function (the runtime's worker would die).
inline void CUDART_CB run_host_work(void* user_data) {
  std::unique_ptr<HostWork> work(static_cast<HostWork*>(user_data));
  try {
    work->run();
  } catch (const std::exception& e) {
    report_execution_fault(cudaErrorLaunchFailure,
                           "%s (executing on its stream) failed: %s; its outputs are incomplete",
                           work->algorithm(), e.what());
  }
}

// Enqueues work on the stream; cudaLaunchHostFunc's result is the call's.
// The work is freed here when it could not be enqueued.
template <typename Work, typename... Args>
inline cudaError_t enqueue(cudaStream_t stream, Args&&... args) {
  std::unique_ptr<Work> work(new (std::nothrow) Work(std::forward<Args>(args)...));
  if (!work) return cudaErrorMemoryAllocation;
  const cudaError_t error = cudaLaunchHostFunc(stream, &run_host_work, static_cast<HostWork*>(work.get()));
  if (error == cudaSuccess) work.release();  // run_host_work frees it
  return error;
}

// -------------------------------------------------------------- random --

// A small generator (splitmix64) seeded from the runtime's stream at enqueue
// time: the work then draws from it on whichever worker thread runs it.
class SplitMix64 {
 public:
  explicit SplitMix64(unsigned long long seed) : state_(seed) {}
  unsigned long long next() {
    unsigned long long z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) (bound > 0), without modulo bias worth noticing
  // for the sizes here (bound <= 2^40 against 2^64).
  unsigned long long below(unsigned long long bound) { return next() % bound; }

 private:
  unsigned long long state_;
};

}  // namespace emu
}  // namespace cub
