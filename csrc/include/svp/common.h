// Backend-neutral types of the svp_fast selection core.
//
// Nothing in csrc/ knows Python or torch: arrays arrive as plain pointers with
// shapes and strides, and user errors are C++ exceptions that bindings.cpp maps
// to ValueError / TypeError / KeyboardInterrupt.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

namespace svp {

enum class DType : int { f32 = 0, f16 = 1, bf16 = 2, f64 = 3 };

inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::f64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f64: return "float64";
  }
  return "?";
}

// A read-only N x D matrix whose rows are contiguous (column stride 1) but may
// sit at any (possibly negative) distance from each other.
struct MatrixView {
  const void* data = nullptr;  // address of element (0, 0)
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;  // distance between rows, in elements
  DType dtype = DType::f32;

  const char* row(int64_t i) const {
    return static_cast<const char*>(data) +
           i * row_stride * static_cast<int64_t>(dtype_size(dtype));
  }
};

enum class Metric : int { euclidean = 0, cosine = 1 };

// A user error: a bad argument. Mapped to Python's ValueError.
class ValueError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The caller's poll hook asked to stop (Ctrl-C). The bindings re-raise the
// pending Python exception (KeyboardInterrupt) in its place.
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled by the caller") {}
};

template <typename... Args>
std::string format(const char* fmt, Args... args) {
  int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string s(static_cast<std::size_t>(n > 0 ? n : 0), '\0');
  if (n > 0) std::snprintf(&s[0], s.size() + 1, fmt, args...);
  return s;
}
inline std::string format(const char* fmt) { return std::string(fmt); }

// User errors name the argument, what was expected and what came.
#define SVP_CHECK_ARG(cond, ...)                         \
  do {                                                   \
    if (!(cond)) throw ::svp::ValueError(::svp::format(__VA_ARGS__)); \
  } while (0)

// Internal invariants: a failure is a bug in svp_fast, reported as RuntimeError
// (never abort(): that would take the user's whole Python process down).
#define SVP_ASSERT(cond)                                                    \
  do {                                                                      \
    if (!(cond))                                                            \
      throw std::logic_error(::svp::format("svp_fast internal error: %s (%s:%d)", \
                                           #cond, __FILE__, __LINE__));     \
  } while (0)

// Hook the caller supplies to watch long work. The core calls it from the
// calling thread, between steps, at most every poll_interval seconds.
class Progress {
 public:
  virtual ~Progress() = default;
  // done: units of work finished (picks for k-center). picks: the picks so far
  // (host memory), or nullptr when they live elsewhere. Return false to stop:
  // the core then throws Cancelled.
  virtual bool poll(int64_t done, const int64_t* picks) = 0;
};

// Calls a Progress (if any) at most every `interval` seconds, or always with
// force; throws Cancelled when it asks to stop. Shared by every driver.
class Poller {
 public:
  Poller(Progress* p, double interval) : p_(p), interval_(interval), last_(Clock::now()) {}
  void operator()(int64_t done, const int64_t* picks = nullptr, bool force = false) {
    if (!p_) return;
    const Clock::time_point now = Clock::now();
    if (!force && std::chrono::duration<double>(now - last_).count() < interval_) return;
    last_ = now;
    if (!p_->poll(done, picks)) throw Cancelled();
  }

 private:
  using Clock = std::chrono::steady_clock;
  Progress* p_;
  double interval_;
  Clock::time_point last_;
};

}  // namespace svp
