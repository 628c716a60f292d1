// A minimal check macro for the emulator's host tests: a failed check prints
// where and what, and counts; the program's exit status is the verdict.
#pragma once

#include <cstdio>

namespace emu_test {

inline int& failures() {
  static int count = 0;
  return count;
}

inline bool check(bool ok, const char* expression, const char* file, int line) {
  if (!ok) {
    ++failures();
    std::fprintf(stderr, "FAIL %s:%d: %s\n", file, line, expression);
  }
  return ok;
}

}  // namespace emu_test

#define CHECK(condition) ::emu_test::check(static_cast<bool>(condition), #condition, __FILE__, __LINE__)
