// The emulator's host tests (csrc/cuda_emu/tests/host): the CUB subset and
// the cuBLAS stand-in, against the mock runtime. Usage: emu_host_tests
// <path of the cuBLAS stand-in's shared library>. Exit status 0 when every
// check passed.
#include <cstdio>

#include "check.h"

void run_cub_tests();
void run_cublas_tests(const char* library_path);

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <libcublas_emu.so>\n", argv[0]);
    return 2;
  }
  run_cub_tests();
  run_cublas_tests(argv[1]);
  if (emu_test::failures() != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", emu_test::failures());
    return 1;
  }
  std::printf("emulator host tests: all checks passed\n");
  return 0;
}
