// Run-time choice of the kernel table by CPU features.
#include <cstdlib>
#include <cstring>

#include "kernels.h"
#include "svp/kcenter.h"

namespace svp {
namespace cpu {

#ifndef SVP_HAVE_AVX512
const KernelTable* table_avx512() { return nullptr; }
#endif
#ifndef SVP_HAVE_AVX2
const KernelTable* table_avx2() { return nullptr; }
#endif

namespace {

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

const KernelTable* choose() {
  if (const char* forced = std::getenv("SVP_FAST_SIMD")) {
    if (const KernelTable* t = kernels_for(forced)) return t;
  }
  if (const KernelTable* t = kernels_for("avx512")) return t;
  if (const KernelTable* t = kernels_for("avx2")) return t;
  return table_generic();
}

}  // namespace

const KernelTable* kernels_for(const char* isa) {
  if (!isa) return nullptr;
  if (!std::strcmp(isa, "avx512")) return cpu_has_avx512() ? table_avx512() : nullptr;
  if (!std::strcmp(isa, "avx2")) return cpu_has_avx2() ? table_avx2() : nullptr;
  if (!std::strcmp(isa, "generic")) return table_generic();
  return nullptr;
}

const KernelTable& kernels() {
  static const KernelTable* chosen = choose();  // read once, never written again
  return *chosen;
}

const KernelTable& kernels_or_throw(const char* isa) {
  if (!isa || !*isa) return kernels();
  const KernelTable* t = kernels_for(isa);
  SVP_CHECK_ARG(t != nullptr,
                "simd must be one of the instruction sets compiled in (%s) and supported "
                "by this CPU, got '%s'",
                kernels_compiled(), isa);
  return *t;
}

const char* kernels_compiled() {
#if defined(SVP_HAVE_AVX512) && defined(SVP_HAVE_AVX2)
  return "avx512,avx2,generic";
#elif defined(SVP_HAVE_AVX2)
  return "avx2,generic";
#else
  return "generic";
#endif
}

}  // namespace cpu

void max2_kernel(const float* m, int64_t n, const char* simd, float* out) {
  cpu::kernels_or_throw(simd).max2(m, n, out);
}

}  // namespace svp
