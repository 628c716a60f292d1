#!/usr/bin/env bash
# Builds and runs the emulator's host tests (the CUB subset, the cuBLAS
# stand-in) under AddressSanitizer and UndefinedBehaviorSanitizer; exits
# nonzero when a build, a check or a sanitizer fails. Builds outside the
# checkout ($EMU_TEST_BUILD_DIR, else a fresh temporary directory).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)"
cuda_include="${CUDA_INCLUDE:-/usr/local/cuda-13.0/include}"
if [ -n "${EMU_TEST_BUILD_DIR:-}" ]; then
  out="$EMU_TEST_BUILD_DIR"
else
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
flags=(-std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
       -I "$root/csrc/cuda_emu/include" -I "$cuda_include")

g++ "${flags[@]}" -fPIC -shared -fvisibility=hidden "$root/csrc/cuda_emu/cublas/cublas_emu.cpp" \
    -Wl,--version-script="$root/csrc/cuda_emu/cublas/cublas_emu.map" -o "$out/libcublas_emu.so"
# the stand-in exports exactly the four entry points the project looks up
exported="$(nm -D --defined-only "$out/libcublas_emu.so" | awk '{print $3}' | sort | tr '\n' ' ')"
if [ "$exported" != "cublasCreate_v2 cublasGemmEx cublasSetMathMode cublasSetStream_v2 " ]; then
  echo "libcublas_emu.so exports: $exported" >&2
  exit 1
fi

# -rdynamic: the stand-in, loaded with dlopen, binds to the mock runtime's
# cudaLaunchHostFunc and svp_emu_* hooks in the executable
tests="$root/csrc/cuda_emu/tests/host"
g++ "${flags[@]}" -rdynamic "$tests/main.cpp" "$tests/test_cub.cpp" "$tests/test_cublas.cpp" \
    "$tests/mock_runtime.cpp" -ldl -o "$out/emu_host_tests"
"$out/emu_host_tests" "$out/libcublas_emu.so"
