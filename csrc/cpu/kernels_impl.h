// The CPU kernels, written once over a small SIMD abstraction and compiled per
// instruction set. Exactly one of SVP_ISA_AVX512, SVP_ISA_AVX2, SVP_ISA_GENERIC
// is defined by the including translation unit, which is compiled with the
// matching -m flags; SVP_ISA_NS names its namespace.
//
// Every kernel reads a row once per call and accumulates in float32 (float64
// for float64 input). The k-center driver does not rely on bit-identical
// results across ISAs: it certifies its picks with a rigorous error bound
// (kcenter.cpp), so any summation order is fine here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include <limits>
#include <type_traits>

#if defined(SVP_ISA_AVX512) || defined(SVP_ISA_AVX2)
#include <immintrin.h>
#endif

#include "kernels.h"

namespace svp {
namespace cpu {
namespace SVP_ISA_NS {

// ---------------------------------------------------------------- scalars --

static inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24; renormalise
      int s = 0;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        ++s;
      }
      mant &= 0x3ffu;
      bits = sign | (static_cast<uint32_t>(127 - 14 - s) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

static inline float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <DType T>
static inline double elem(const char* row, int64_t j) {
  if constexpr (T == DType::f32) {
    float v;
    std::memcpy(&v, row + 4 * j, 4);
    return v;
  } else if constexpr (T == DType::f64) {
    double v;
    std::memcpy(&v, row + 8 * j, 8);
    return v;
  } else {
    uint16_t h;
    std::memcpy(&h, row + 2 * j, 2);
    return T == DType::f16 ? half_to_float(h) : bf16_to_float(h);
  }
}

// Constants of the uncertainty exp kernels.
constexpr float kFastClamp = unc::kFastGapClamp;
// ln 2 in two parts (fdlibm's: the high part has 21 trailing zero bits, so
// n * kLn2Hi is exact for |n| < 2^21)
constexpr double kLn2Hi = 6.93147180369123816490e-01;
constexpr double kLn2Lo = 1.90821492927058770002e-10;
// 1 / i!
constexpr double kExpTaylor[14] = {1.0,
                                   1.0,
                                   0.5,
                                   0.16666666666666666,
                                   0.041666666666666664,
                                   0.008333333333333333,
                                   0.001388888888888889,
                                   0.0001984126984126984,
                                   2.48015873015873e-05,
                                   2.7557319223985893e-06,
                                   2.755731922398589e-07,
                                   2.505210838544172e-08,
                                   2.08767569878681e-09,
                                   1.6059043836821613e-10};

// ------------------------------------------------------ SIMD abstraction --
// Two lane types per ISA: F (float lanes) and D (double lanes). Each offers
// zero/set1/loadc/store, arithmetic, reductions and a typed row load.

#if defined(SVP_ISA_AVX512)

struct F {
  using S = float;
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(S s) { return _mm512_set1_ps(s); }
  static V loadc(const S* p) { return _mm512_loadu_ps(p); }
  static void store(S* p, V v) { _mm512_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fmsub(V a, V b, V c) { return _mm512_fmsub_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static S reduce_add(V v) { return _mm512_reduce_add_ps(v); }
  static S reduce_max(V v) { return _mm512_reduce_max_ps(v); }
  // the four sums of a0..a3 at once (a 4-level tree, as reduce_add's)
  static void reduce4(V a0, V a1, V a2, V a3, S* out) {
    const __m512 x01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    const __m512 x23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    const __m512 y = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x01), _mm512_castps_pd(x23))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x01), _mm512_castps_pd(x23))));
    // each 128-bit lane now holds partial sums [s0 s1 s2 s3]; add the 4 lanes
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(y), _mm512_extractf32x8_ps(y, 1));
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(out, q);
  }
  // a > b ? x : y
  static V select_gt(V a, V b, V x, V y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x);
  }
  template <DType T>
  static V load(const char* row, int64_t j) {
    if constexpr (T == DType::f32) {
      return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + j);
    } else if constexpr (T == DType::f16) {
      return _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * j)));
    } else if constexpr (T == DType::bf16) {
      __m512i w = _mm512_cvtepu16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * j)));
      return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    } else {
      const double* p = reinterpret_cast<const double*>(row) + j;
      __m256 lo = _mm512_cvtpd_ps(_mm512_loadu_pd(p));
      __m256 hi = _mm512_cvtpd_ps(_mm512_loadu_pd(p + 8));
      return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    }
  }
  static V vexp(V x);
  static V vlog(V x);
  // acc + (d < 0 ? e : 0); n_neg counts, per lane, the lanes of d below 0
  using Count = __m512i;
  static Count count_zero() { return _mm512_setzero_si512(); }
  static int64_t count_total(Count c) { return _mm512_reduce_add_epi32(c); }
  static V add_if_neg(V acc, V d, V e, Count& n_neg) {
    const __mmask16 neg = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_LT_OQ);
    n_neg = _mm512_mask_add_epi32(n_neg, neg, n_neg, _mm512_set1_epi32(1));
    return _mm512_mask_add_ps(acc, neg, acc, e);
  }
};

struct D {
  using S = double;
  using V = __m512d;
  static constexpr int W = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(S s) { return _mm512_set1_pd(s); }
  static V loadc(const S* p) { return _mm512_loadu_pd(p); }
  static void store(S* p, V v) { _mm512_storeu_pd(p, v); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V div(V a, V b) { return _mm512_div_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V fmsub(V a, V b, V c) { return _mm512_fmsub_pd(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm512_max_pd(a, b); }
  static V min(V a, V b) { return _mm512_min_pd(a, b); }
  static S reduce_add(V v) { return _mm512_reduce_add_pd(v); }
  static S reduce_max(V v) { return _mm512_reduce_max_pd(v); }
  using Count = __m512i;
  static Count count_zero() { return _mm512_setzero_si512(); }
  static int64_t count_total(Count c) { return _mm512_reduce_add_epi64(c); }
  static V add_if_neg(V acc, V d, V e, Count& n_neg) {
    const __mmask8 neg = _mm512_cmp_pd_mask(d, _mm512_setzero_pd(), _CMP_LT_OQ);
    n_neg = _mm512_mask_add_epi64(n_neg, neg, n_neg, _mm512_set1_epi64(1));
    return _mm512_mask_add_pd(acc, neg, acc, e);
  }
  static V vexp(V x);
  template <DType T>
  static V load(const char* row, int64_t j) {
    if constexpr (T == DType::f32) {
      return _mm512_cvtps_pd(_mm256_loadu_ps(reinterpret_cast<const float*>(row) + j));
    } else if constexpr (T == DType::f16) {
      return _mm512_cvtps_pd(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * j))));
    } else if constexpr (T == DType::bf16) {
      __m256i w = _mm256_cvtepu16_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * j)));
      return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    } else {
      return _mm512_loadu_pd(reinterpret_cast<const double*>(row) + j);
    }
  }
};

// exp for x in [-104, 0] (softmax gaps, clamped by the caller): Cephes-style
// range reduction and a degree-6 polynomial, scaled by 2^n with scalef (which
// rounds subnormal results correctly; e^-104 rounds to 0). Within kCpuExpRelU
// 2^-24 relative, plus 2^-149 absolute below float32's normal range (checked
// exhaustively).
inline F::V F::vexp(V x) {
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// float64 exp for x <= 0: n = round(x / ln 2), r = x - n ln 2 in two parts
// (|r| <= 0.347), the Taylor polynomial of degree 13 (truncation below
// 0.05 2^-53), scalef. Within a few 2^-53 (checked by sampling against long
// double); 0 below -746.
inline D::V D::vexp(V x) {
  x = _mm512_max_pd(x, _mm512_set1_pd(-746.0));
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(kLn2Hi), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(kLn2Lo), r);
  __m512d p = _mm512_set1_pd(kExpTaylor[13]);
  for (int i = 12; i >= 0; --i) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(kExpTaylor[i]));
  return _mm512_scalef_pd(p, n);
}

// log for x > 0 normal (Cephes logf), about 2 ulp.
inline F::V F::vlog(V x) {
  __m512i xi = _mm512_castps_si512(x);
  __m512i ei = _mm512_sub_epi32(_mm512_srli_epi32(xi, 23), _mm512_set1_epi32(126));
  __m512 m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(xi, _mm512_set1_epi32(0x007fffff)),
                                                 _mm512_set1_epi32(0x3f000000)));  // [0.5, 1)
  __m512 e = _mm512_cvtepi32_ps(ei);
  __mmask16 small = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm512_mask_sub_ps(e, small, e, _mm512_set1_ps(1.0f));
  m = _mm512_mask_add_ps(m, small, m, m);
  m = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
  __m512 z = _mm512_mul_ps(m, m);
  __m512 y = _mm512_set1_ps(7.0376836292E-2f);
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.1514610310E-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(1.1676998740E-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.2420140846E-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(1.4249322787E-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.6668057665E-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(2.0000714765E-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-2.4999993993E-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(3.3333331174E-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, m), z);
  y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(z, _mm512_set1_ps(0.5f), y);
  __m512 r = _mm512_add_ps(m, y);
  return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), r);
}

#elif defined(SVP_ISA_AVX2)

struct F {
  using S = float;
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(S s) { return _mm256_set1_ps(s); }
  static V loadc(const S* p) { return _mm256_loadu_ps(p); }
  static void store(S* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fmsub(V a, V b, V c) { return _mm256_fmsub_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static S reduce_add(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static S reduce_max(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void reduce4(V a0, V a1, V a2, V a3, S* out) {
    const __m256 x01 = _mm256_hadd_ps(a0, a1);  // [a0 pairs, a1 pairs] per 128-bit half
    const __m256 x23 = _mm256_hadd_ps(a2, a3);
    const __m256 y = _mm256_hadd_ps(x01, x23);  // [s0 s1 s2 s3] per half
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1)));
  }
  static V select_gt(V a, V b, V x, V y) {
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
  }
  template <DType T>
  static V load(const char* row, int64_t j) {
    if constexpr (T == DType::f32) {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + j);
    } else if constexpr (T == DType::f16) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * j)));
    } else if constexpr (T == DType::bf16) {
      __m256i w = _mm256_cvtepu16_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * j)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    } else {
      const double* p = reinterpret_cast<const double*>(row) + j;
      __m128 lo = _mm256_cvtpd_ps(_mm256_loadu_pd(p));
      __m128 hi = _mm256_cvtpd_ps(_mm256_loadu_pd(p + 4));
      return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
    }
  }
  static V vexp(V x);
  static V vlog(V x);
  using Count = __m256i;
  static Count count_zero() { return _mm256_setzero_si256(); }
  static int64_t count_total(Count c) {
    alignas(32) int32_t a[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(a), c);
    int64_t t = 0;
    for (int i = 0; i < 8; ++i) t += a[i];
    return t;
  }
  static V add_if_neg(V acc, V d, V e, Count& n_neg) {
    const __m256 neg = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_LT_OQ);
    n_neg = _mm256_sub_epi32(n_neg, _mm256_castps_si256(neg));  // all ones: -1
    return _mm256_add_ps(acc, _mm256_and_ps(neg, e));
  }
};

struct D {
  using S = double;
  using V = __m256d;
  static constexpr int W = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(S s) { return _mm256_set1_pd(s); }
  static V loadc(const S* p) { return _mm256_loadu_pd(p); }
  static void store(S* p, V v) { _mm256_storeu_pd(p, v); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V fmsub(V a, V b, V c) { return _mm256_fmsub_pd(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V min(V a, V b) { return _mm256_min_pd(a, b); }
  static S reduce_add(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static S reduce_max(V v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_max_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  template <DType T>
  static V load(const char* row, int64_t j) {
    if constexpr (T == DType::f32) {
      return _mm256_cvtps_pd(_mm_loadu_ps(reinterpret_cast<const float*>(row) + j));
    } else if constexpr (T == DType::f16) {
      return _mm256_cvtps_pd(
          _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 2 * j))));
    } else if constexpr (T == DType::bf16) {
      __m128i w = _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 2 * j)));
      return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(w, 16)));
    } else {
      return _mm256_loadu_pd(reinterpret_cast<const double*>(row) + j);
    }
  }
  using Count = __m256i;
  static Count count_zero() { return _mm256_setzero_si256(); }
  static int64_t count_total(Count c) {
    alignas(32) int64_t a[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(a), c);
    return a[0] + a[1] + a[2] + a[3];
  }
  static V add_if_neg(V acc, V d, V e, Count& n_neg) {
    const __m256d neg = _mm256_cmp_pd(d, _mm256_setzero_pd(), _CMP_LT_OQ);
    n_neg = _mm256_sub_epi64(n_neg, _mm256_castpd_si256(neg));
    return _mm256_add_pd(acc, _mm256_and_pd(neg, e));
  }
  static V vexp(V x);
};

// float64 exp for x <= 0, as the AVX-512 one; without scalef, 2^n is applied
// as 2^(n - n/2) 2^(n/2), two normal powers of two (the first product is exact).
inline D::V D::vexp(V x) {
  x = _mm256_max_pd(x, _mm256_set1_pd(-746.0));
  const __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(kLn2Hi), x);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(kLn2Lo), r);
  __m256d p = _mm256_set1_pd(kExpTaylor[13]);
  for (int i = 12; i >= 0; --i) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kExpTaylor[i]));
  const __m128i ni = _mm256_cvtpd_epi32(n);
  const __m128i n1 = _mm_srai_epi32(ni, 1);
  const __m128i n2 = _mm_sub_epi32(ni, n1);
  auto pow2 = [](__m128i k) {
    return _mm256_castsi256_pd(_mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(k), _mm256_set1_epi64x(1023)), 52));
  };
  return _mm256_mul_pd(_mm256_mul_pd(p, pow2(n1)), pow2(n2));
}

inline F::V F::vexp(V x) {
  const __m256 too_small = _mm256_set1_ps(-87.3f);
  __m256 keep = _mm256_cmp_ps(x, too_small, _CMP_GE_OQ);
  x = _mm256_max_ps(x, too_small);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_and_ps(res, keep);
}

inline F::V F::vlog(V x) {
  __m256i xi = _mm256_castps_si256(x);
  __m256i ei = _mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)),
                                                 _mm256_set1_epi32(0x3f000000)));
  __m256 e = _mm256_cvtepi32_ps(ei);
  __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(small, _mm256_set1_ps(1.0f)));
  m = _mm256_add_ps(m, _mm256_and_ps(small, m));
  m = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
  __m256 z = _mm256_mul_ps(m, m);
  __m256 y = _mm256_set1_ps(7.0376836292E-2f);
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174E-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  __m256 r = _mm256_add_ps(m, y);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), r);
}

#else  // SVP_ISA_GENERIC: fixed-size arrays the compiler may vectorise

template <typename Scalar, int Width>
struct GenericLanes {
  using S = Scalar;
  struct V {
    S v[Width];
  };
  static constexpr int W = Width;
  static V zero() { return set1(S(0)); }
  static V set1(S s) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = s;
    return r;
  }
  static V loadc(const S* p) {
    V r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static void store(S* p, V v) { std::memcpy(p, v.v, sizeof(v.v)); }
#define SVP_GENERIC_BINOP(name, expr)           \
  static V name(V a, V b) {                     \
    V r;                                        \
    for (int i = 0; i < W; ++i) r.v[i] = expr;  \
    return r;                                   \
  }
  SVP_GENERIC_BINOP(add, a.v[i] + b.v[i])
  SVP_GENERIC_BINOP(sub, a.v[i] - b.v[i])
  SVP_GENERIC_BINOP(mul, a.v[i] * b.v[i])
  SVP_GENERIC_BINOP(div, a.v[i] / b.v[i])
  SVP_GENERIC_BINOP(max, a.v[i] > b.v[i] ? a.v[i] : b.v[i])
  SVP_GENERIC_BINOP(min, a.v[i] < b.v[i] ? a.v[i] : b.v[i])
#undef SVP_GENERIC_BINOP
  static V fmadd(V a, V b, V c) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  static V fmsub(V a, V b, V c) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] * b.v[i] - c.v[i];
    return r;
  }
  static V fnmadd(V a, V b, V c) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = c.v[i] - a.v[i] * b.v[i];
    return r;
  }
  static S reduce_add(V a) {
    S s = 0;
    for (int i = 0; i < W; ++i) s += a.v[i];
    return s;
  }
  static S reduce_max(V a) {
    S s = a.v[0];
    for (int i = 1; i < W; ++i) s = a.v[i] > s ? a.v[i] : s;
    return s;
  }
  static V select_gt(V a, V b, V x, V y) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] > b.v[i] ? x.v[i] : y.v[i];
    return r;
  }
  template <DType T>
  static V load(const char* row, int64_t j) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = static_cast<S>(elem<T>(row, j + i));
    return r;
  }
  static V vexp(V x) {
    V r;
    for (int i = 0; i < W; ++i)
      r.v[i] = std::is_same<S, float>::value && x.v[i] < S(-87.3) ? S(0) : std::exp(x.v[i]);
    return r;
  }
  using Count = int64_t;
  static Count count_zero() { return 0; }
  static int64_t count_total(Count c) { return c; }
  static V add_if_neg(V acc, V d, V e, int64_t& n_neg) {
    V r;
    for (int i = 0; i < W; ++i) {
      const bool neg = d.v[i] < S(0);
      n_neg += neg;
      r.v[i] = acc.v[i] + (neg ? e.v[i] : S(0));
    }
    return r;
  }
  static V vlog(V x) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = std::log(x.v[i]);
    return r;
  }
};
using F = GenericLanes<float, 8>;
using D = GenericLanes<double, 4>;

#endif

// acc_lo/acc_hi (float64 lanes) += the float32 lanes of v, widened exactly.
static inline void widen_add(D::V& acc_lo, D::V& acc_hi, F::V v) {
#if defined(SVP_ISA_AVX512)
  acc_lo = _mm512_add_pd(acc_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  acc_hi = _mm512_add_pd(acc_hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
#elif defined(SVP_ISA_AVX2)
  acc_lo = _mm256_add_pd(acc_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  acc_hi = _mm256_add_pd(acc_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
#else
  static_assert(F::W == 2 * D::W, "generic lanes: two float64 vectors per float32 vector");
  for (int i = 0; i < D::W; ++i) {
    acc_lo.v[i] += static_cast<double>(v.v[i]);
    acc_hi.v[i] += static_cast<double>(v.v[i + D::W]);
  }
#endif
}

// reduce4 where a lane type has one, else four reduce_add.
template <class I, class = void>
struct HasReduce4 : std::false_type {};
template <class I>
struct HasReduce4<I, decltype(I::reduce4(typename I::V(), typename I::V(), typename I::V(),
                                          typename I::V(), nullptr), void())> : std::true_type {};

template <class I>
static inline void reduce_four(typename I::V a0, typename I::V a1, typename I::V a2,
                               typename I::V a3, typename I::S* out) {
  if constexpr (HasReduce4<I>::value) {
    I::reduce4(a0, a1, a2, a3, out);
  } else {
    out[0] = I::reduce_add(a0);
    out[1] = I::reduce_add(a1);
    out[2] = I::reduce_add(a2);
    out[3] = I::reduce_add(a3);
  }
}

// One vector's sum by the very tree reduce_four gives it (adding exact zeros
// for the other three), so that a distance has the same bits whether its row
// was reduced in a group of four or alone: the engines then agree bit for
// bit on every value, whatever rows they happen to group (a resumed run
// reports the uninterrupted run's radii).
template <class I>
static inline typename I::S reduce_one(typename I::V a) {
  if constexpr (HasReduce4<I>::value) {
    alignas(16) typename I::S out[4];
    I::reduce4(a, I::zero(), I::zero(), I::zero(), out);
    return out[0];
  } else {
    return I::reduce_add(a);
  }
}

// A partial chunk at a row's end: n < W elements, the rest set to `fill`.
template <class I, DType T>
static inline typename I::V load_tail(const char* row, int64_t j, int64_t n,
                                      typename I::S fill) {
  alignas(64) typename I::S buf[I::W];
  for (int64_t i = 0; i < I::W; ++i)
    buf[i] = i < n ? static_cast<typename I::S>(elem<T>(row, j + i)) : fill;
  return I::loadc(buf);
}

template <class I>
static inline typename I::V loadc_tail(const typename I::S* p, int64_t n) {
  alignas(64) typename I::S buf[I::W];
  for (int64_t i = 0; i < I::W; ++i) buf[i] = i < n ? p[i] : typename I::S(0);
  return I::loadc(buf);
}

// ------------------------------------------------------------ distances --

// Four rows at a time: four independent accumulator chains hide FMA latency,
// and each center chunk is loaded once for four rows.
template <class I, DType T, bool Scaled>
static void d2_rows_t(const char* const* rows, const typename I::S* scale, int64_t n,
                      const typename I::S* c, int64_t D, typename I::S* out) {
  using V = typename I::V;
  using S = typename I::S;
  constexpr int W = I::W;
  const int64_t Dfull = D - D % W;
  // Software prefetch of the rows two groups ahead: the hardware prefetcher
  // alone left a single thread at ~60% of its read bandwidth on short rows.
  [[maybe_unused]] const int64_t row_bytes = D * static_cast<int64_t>(dtype_size(T));
  int64_t r = 0;
#if defined(SVP_ISA_AVX512)
  // Half-precision rows, eight at a time where 32 vector registers hold them:
  // more independent convert/multiply-add chains in flight (about 10% on a
  // single thread). Four-byte rows were slower this way (the prefetches of
  // eight rows ahead), so they keep the four-row loop below.
  for (; (T == DType::f16 || T == DType::bf16) && r + 8 <= n; r += 8) {
    if (r + 24 <= n) {
      for (int k = 16; k < 24; ++k)
        for (int64_t b = 0; b < row_bytes; b += 64) _mm_prefetch(rows[r + k] + b, _MM_HINT_T0);
    }
    const char* x[8];
    V s[8], a[8];
    for (int k = 0; k < 8; ++k) {
      x[k] = rows[r + k];
      s[k] = I::set1(Scaled ? scale[r + k] : S(1));
      a[k] = I::zero();
    }
    for (int64_t j = 0; j < Dfull; j += W) {
      const V cv = I::loadc(c + j);
      for (int k = 0; k < 8; ++k) {
        const V v = I::template load<T>(x[k], j);
        const V d = Scaled ? I::fmsub(v, s[k], cv) : I::sub(v, cv);
        a[k] = I::fmadd(d, d, a[k]);
      }
    }
    if (Dfull < D) {
      const int64_t t = D - Dfull;
      const V cv = loadc_tail<I>(c + Dfull, t);
      for (int k = 0; k < 8; ++k) {
        const V v = load_tail<I, T>(x[k], Dfull, t, 0);
        const V d = Scaled ? I::fmsub(v, s[k], cv) : I::sub(v, cv);
        a[k] = I::fmadd(d, d, a[k]);
      }
    }
    reduce_four<I>(a[0], a[1], a[2], a[3], out + r);
    reduce_four<I>(a[4], a[5], a[6], a[7], out + r + 4);
  }
#endif
  for (; r + 4 <= n; r += 4) {
#if defined(SVP_ISA_AVX512) || defined(SVP_ISA_AVX2)
    if (r + 12 <= n) {
      for (int k = 8; k < 12; ++k)
        for (int64_t b = 0; b < row_bytes; b += 64) _mm_prefetch(rows[r + k] + b, _MM_HINT_T0);
    }
#endif
    const char* x0 = rows[r];
    const char* x1 = rows[r + 1];
    const char* x2 = rows[r + 2];
    const char* x3 = rows[r + 3];
    V s0 = I::set1(Scaled ? scale[r] : S(1)), s1 = I::set1(Scaled ? scale[r + 1] : S(1));
    V s2 = I::set1(Scaled ? scale[r + 2] : S(1)), s3 = I::set1(Scaled ? scale[r + 3] : S(1));
    V a0 = I::zero(), a1 = I::zero(), a2 = I::zero(), a3 = I::zero();
    auto step = [&](V cv, V v0, V v1, V v2, V v3) {
      V d0 = Scaled ? I::fmsub(v0, s0, cv) : I::sub(v0, cv);
      V d1 = Scaled ? I::fmsub(v1, s1, cv) : I::sub(v1, cv);
      V d2 = Scaled ? I::fmsub(v2, s2, cv) : I::sub(v2, cv);
      V d3 = Scaled ? I::fmsub(v3, s3, cv) : I::sub(v3, cv);
      a0 = I::fmadd(d0, d0, a0);
      a1 = I::fmadd(d1, d1, a1);
      a2 = I::fmadd(d2, d2, a2);
      a3 = I::fmadd(d3, d3, a3);
    };
    for (int64_t j = 0; j < Dfull; j += W) {
      step(I::loadc(c + j), I::template load<T>(x0, j), I::template load<T>(x1, j),
           I::template load<T>(x2, j), I::template load<T>(x3, j));
    }
    if (Dfull < D) {
      const int64_t t = D - Dfull;
      step(loadc_tail<I>(c + Dfull, t), load_tail<I, T>(x0, Dfull, t, 0),
           load_tail<I, T>(x1, Dfull, t, 0), load_tail<I, T>(x2, Dfull, t, 0),
           load_tail<I, T>(x3, Dfull, t, 0));
    }
    reduce_four<I>(a0, a1, a2, a3, out + r);
  }
  for (; r < n; ++r) {
    const char* x = rows[r];
    V s = I::set1(Scaled ? scale[r] : S(1));
    V a = I::zero();
    for (int64_t j = 0; j < Dfull; j += W) {
      V v = I::template load<T>(x, j);
      V d = Scaled ? I::fmsub(v, s, I::loadc(c + j)) : I::sub(v, I::loadc(c + j));
      a = I::fmadd(d, d, a);
    }
    if (Dfull < D) {
      const int64_t t = D - Dfull;
      V v = load_tail<I, T>(x, Dfull, t, 0);
      V cv = loadc_tail<I>(c + Dfull, t);
      V d = Scaled ? I::fmsub(v, s, cv) : I::sub(v, cv);
      a = I::fmadd(d, d, a);
    }
    out[r] = reduce_one<I>(a);
  }
}

template <class I>
static void d2_rows(DType dtype, const char* const* rows, const typename I::S* scale,
                    int64_t n, const typename I::S* center, int64_t D,
                    typename I::S* out) {
#define SVP_D2_CASE(T)                                                        \
  case T:                                                                     \
    if (scale)                                                                \
      d2_rows_t<I, T, true>(rows, scale, n, center, D, out);                  \
    else                                                                      \
      d2_rows_t<I, T, false>(rows, scale, n, center, D, out);                 \
    return;
  switch (dtype) {
    SVP_D2_CASE(DType::f32)
    SVP_D2_CASE(DType::f16)
    SVP_D2_CASE(DType::bf16)
    SVP_D2_CASE(DType::f64)
  }
#undef SVP_D2_CASE
}

// ---------------------------------------------------------- lazy refresh --

static inline void refresh_update(int64_t j, float d, int64_t last, float& m, float& m2,
                                  int64_t& assign) {
  if (j < last) return;  // the row has this center already
  // take_center_distance (engine.h), spelled out: code compiled for one ISA
  // must not share an inline function with other translation units (the
  // linker keeps one copy, possibly built for another ISA)
  if (d < m) {
    m2 = m;
    m = d;
    assign = j;
  } else if (d < m2) {
    m2 = d;
  }
}

// 4 rows x 4 centers per block: every row chunk and center chunk is loaded
// once for 16 distances (d2_rows reloads the rows for every center).
template <DType T>
static void refresh_tile_t(const char* const* rows, int64_t cnt, const char* const* centers,
                           int64_t j0, int64_t nc, int64_t D, const int64_t* last, float* m,
                           float* m2, int64_t* assign) {
  using V = F::V;
  constexpr int W = F::W;
  const int64_t Dfull = D - D % W;
  // a center as float32, for the rows and centers the 4 x 4 tile leaves over
  thread_local std::vector<float> cbuf;
  auto center_f32 = [&](int64_t k) -> const float* {
    if constexpr (T == DType::f32) return reinterpret_cast<const float*>(centers[k]);
    cbuf.resize(static_cast<size_t>(D));
    for (int64_t j = 0; j < D; ++j) cbuf[j] = static_cast<float>(elem<T>(centers[k], j));
    return cbuf.data();
  };
  int64_t r = 0;
  for (; r + 4 <= cnt; r += 4) {
    const char* x[4];
    for (int a = 0; a < 4; ++a) x[a] = rows[r + a];
    int64_t k = 0;
    for (; k + 4 <= nc; k += 4) {
      const char* c[4] = {centers[k], centers[k + 1], centers[k + 2], centers[k + 3]};
      V acc[4][4];
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) acc[a][b] = F::zero();
      // one column block of the tile: four rows against four centers
      auto block = [&](V c0, V c1, V c2, V c3, auto load_row) {
        for (int a = 0; a < 4; ++a) {
          const V xv = load_row(a);
          V d = F::sub(xv, c0);
          acc[a][0] = F::fmadd(d, d, acc[a][0]);
          d = F::sub(xv, c1);
          acc[a][1] = F::fmadd(d, d, acc[a][1]);
          d = F::sub(xv, c2);
          acc[a][2] = F::fmadd(d, d, acc[a][2]);
          d = F::sub(xv, c3);
          acc[a][3] = F::fmadd(d, d, acc[a][3]);
        }
      };
      // 16-bit rows and centers widen to float32 as they load (exactly)
      for (int64_t j = 0; j < Dfull; j += W)
        block(F::template load<T>(c[0], j), F::template load<T>(c[1], j),
              F::template load<T>(c[2], j), F::template load<T>(c[3], j),
              [&](int a) { return F::template load<T>(x[a], j); });
      if (Dfull < D) {
        const int64_t t = D - Dfull;
        block(load_tail<F, T>(c[0], Dfull, t, 0), load_tail<F, T>(c[1], Dfull, t, 0),
              load_tail<F, T>(c[2], Dfull, t, 0), load_tail<F, T>(c[3], Dfull, t, 0),
              [&](int a) { return load_tail<F, T>(x[a], Dfull, t, 0); });
      }
      alignas(16) float out[4][4];
      for (int a = 0; a < 4; ++a) reduce_four<F>(acc[a][0], acc[a][1], acc[a][2], acc[a][3], out[a]);
      for (int a = 0; a < 4; ++a)  // centers in order: the same updates as one at a time
        for (int b = 0; b < 4; ++b)
          refresh_update(j0 + k + b, out[a][b], last[r + a], m[r + a], m2[r + a], assign[r + a]);
    }
    for (; k < nc; ++k) {
      float out[4];
      d2_rows_t<F, T, false>(rows + r, nullptr, 4, center_f32(k), D, out);
      for (int a = 0; a < 4; ++a)
        refresh_update(j0 + k, out[a], last[r + a], m[r + a], m2[r + a], assign[r + a]);
    }
  }
  for (; r < cnt; ++r) {
    for (int64_t k = 0; k < nc; ++k) {
      float d;
      d2_rows_t<F, T, false>(rows + r, nullptr, 1, center_f32(k), D, &d);
      refresh_update(j0 + k, d, last[r], m[r], m2[r], assign[r]);
    }
  }
}

static void refresh_tile(DType dtype, const char* const* rows, int64_t cnt,
                         const char* const* centers, int64_t j0, int64_t nc, int64_t D,
                         const int64_t* last, float* m, float* m2, int64_t* assign) {
  switch (dtype) {
    case DType::f16:
      return refresh_tile_t<DType::f16>(rows, cnt, centers, j0, nc, D, last, m, m2, assign);
    case DType::bf16:
      return refresh_tile_t<DType::bf16>(rows, cnt, centers, j0, nc, D, last, m, m2, assign);
    default:
      return refresh_tile_t<DType::f32>(rows, cnt, centers, j0, nc, D, last, m, m2, assign);
  }
}

// ------------------------------------------------------------ dot blocks --
// The product screen's dot products (csrc/cpu/product_screen.h):
//   out[r * ldo + c] = sum_j x_r[j] y_c[j]   (r < nr, c < nc)
// of raw rows of `dtype` (widened exactly to the lanes of I as they load) with
// centers given as lanes' scalars (y_c at centers + c * ldc). Each lane adds
// ceil(D / W) products by FMA in j order, then reduce_four's tree sums the
// lanes: the accumulation structure of svp/exactness.h, whose bound the
// screen uses. MR rows x NR centers accumulate in registers at once, so each
// chunk of a row is loaded once for NR products and each chunk of a center
// once for MR. A partial block at the edge repeats its last row (center);
// the repeats are computed and dropped. Measured on 2048 float16 columns (one
// Zen 4 core, rows and centers from L2): 6 x 4 with float32 centers 94-97
// GFLOP/s against 87-89 with 16-bit centers widened as they load, 75 for
// 3 x 8 or 8 x 3, 60 for the 4 x 4 difference-form refresh tile; a
// peak-FMA loop runs 117.
#if defined(SVP_ISA_AVX512)
constexpr int kDotMR = 6, kDotNR = 4;  // 24 accumulators of 32 registers
#elif defined(SVP_ISA_AVX2)
constexpr int kDotMR = 3, kDotNR = 3;  // 9 accumulators of 16 registers
#else
constexpr int kDotMR = 2, kDotNR = 2;
#endif

template <class I, DType T>
static void dot_block_t(const char* const* rows, int64_t nr, const typename I::S* centers,
                        int64_t ldc, int64_t nc, int64_t D, typename I::S* out, int64_t ldo) {
  using V = typename I::V;
  using S = typename I::S;
  constexpr int W = I::W, MR = kDotMR, NR = kDotNR;
  const int64_t Dfull = D - D % W;
  for (int64_t r0 = 0; r0 < nr; r0 += MR) {
    const char* x[MR];
    for (int a = 0; a < MR; ++a) x[a] = rows[std::min<int64_t>(r0 + a, nr - 1)];
    for (int64_t c0 = 0; c0 < nc; c0 += NR) {
      const S* y[NR];
      for (int b = 0; b < NR; ++b) y[b] = centers + std::min<int64_t>(c0 + b, nc - 1) * ldc;
      V acc[MR][NR];
      for (int a = 0; a < MR; ++a)
        for (int b = 0; b < NR; ++b) acc[a][b] = I::zero();
      for (int64_t j = 0; j < Dfull; j += W) {
        V xv[MR];
        for (int a = 0; a < MR; ++a) xv[a] = I::template load<T>(x[a], j);
        for (int b = 0; b < NR; ++b) {
          const V yv = I::loadc(y[b] + j);
          for (int a = 0; a < MR; ++a) acc[a][b] = I::fmadd(xv[a], yv, acc[a][b]);
        }
      }
      if (Dfull < D) {
        const int64_t t = D - Dfull;
        V xv[MR];
        for (int a = 0; a < MR; ++a) xv[a] = load_tail<I, T>(x[a], Dfull, t, 0);
        for (int b = 0; b < NR; ++b) {
          const V yv = loadc_tail<I>(y[b] + Dfull, t);
          for (int a = 0; a < MR; ++a) acc[a][b] = I::fmadd(xv[a], yv, acc[a][b]);
        }
      }
      const int64_t ra = std::min<int64_t>(MR, nr - r0), cb = std::min<int64_t>(NR, nc - c0);
      for (int a = 0; a < ra; ++a) {
        alignas(64) S s[(NR + 3) / 4 * 4];
        for (int b = 0; b < NR; b += 4)
          reduce_four<I>(acc[a][b], b + 1 < NR ? acc[a][b + 1] : I::zero(),
                         b + 2 < NR ? acc[a][b + 2] : I::zero(),
                         b + 3 < NR ? acc[a][b + 3] : I::zero(), s + b);
        for (int b = 0; b < cb; ++b) out[(r0 + a) * ldo + c0 + b] = s[b];
      }
    }
  }
}

template <class I>
static void dot_block(DType dtype, const char* const* rows, int64_t nr,
                      const typename I::S* centers, int64_t ldc, int64_t nc, int64_t D,
                      typename I::S* out, int64_t ldo) {
  switch (dtype) {
    case DType::f16:
      return dot_block_t<I, DType::f16>(rows, nr, centers, ldc, nc, D, out, ldo);
    case DType::bf16:
      return dot_block_t<I, DType::bf16>(rows, nr, centers, ldc, nc, D, out, ldo);
    case DType::f32:
      return dot_block_t<I, DType::f32>(rows, nr, centers, ldc, nc, D, out, ldo);
    case DType::f64:
      return dot_block_t<I, DType::f64>(rows, nr, centers, ldc, nc, D, out, ldo);
  }
}

// ----------------------------------------------------------- center vec --
// RowSource::center's arithmetic in float64 lanes: x_j widened (exact), divided
// by norm (correctly rounded, as the scalar division), then rounded to Acc.
template <typename Acc, DType T>
static void center_vec_t(const char* row, int64_t D, double norm, Acc* out) {
  constexpr int W = D::W;
  int64_t j = 0;
  const typename D::V nv = D::set1(norm);
  alignas(64) double buf[W];
  for (; j + W <= D; j += W) {
    typename D::V v = D::template load<T>(row, j);
    if (norm != 0) v = D::div(v, nv);
    if constexpr (std::is_same<Acc, double>::value) {
      D::store(out + j, v);
    } else {
#if defined(SVP_ISA_AVX512)
      _mm256_storeu_ps(out + j, _mm512_cvtpd_ps(v));
#elif defined(SVP_ISA_AVX2)
      _mm_storeu_ps(out + j, _mm256_cvtpd_ps(v));
#else
      D::store(buf, v);
      for (int i = 0; i < W; ++i) out[j + i] = static_cast<Acc>(buf[i]);
#endif
    }
  }
  for (; j < D; ++j) {
    const double v = elem<T>(row, j);
    out[j] = static_cast<Acc>(norm != 0 ? v / norm : v);
  }
  (void)buf;
}

template <typename Acc>
static void center_vec(DType dtype, const char* row, int64_t D, double norm, Acc* out) {
  switch (dtype) {
    case DType::f16:
      return center_vec_t<Acc, DType::f16>(row, D, norm, out);
    case DType::bf16:
      return center_vec_t<Acc, DType::bf16>(row, D, norm, out);
    case DType::f32:
      return center_vec_t<Acc, DType::f32>(row, D, norm, out);
    case DType::f64:
      return center_vec_t<Acc, DType::f64>(row, D, norm, out);
  }
}

// ------------------------------------------------------------ row facts --

template <DType T>
static void row_facts_t(const char* row, int64_t D, RowFacts* out) {
  // Largest magnitude by the integer order of |x|'s bits: one vectorisable
  // pass that also reveals NaN/Inf (their magnitude bits are the largest).
  uint64_t mx = 0;
  uint64_t inf_bits;
  if constexpr (T == DType::f32) {
    inf_bits = 0x7f800000u;
    const char* p = row;
    for (int64_t j = 0; j < D; ++j) {
      uint32_t b;
      std::memcpy(&b, p + 4 * j, 4);
      uint64_t a = b & 0x7fffffffu;
      mx = a > mx ? a : mx;
    }
  } else if constexpr (T == DType::f64) {
    inf_bits = 0x7ff0000000000000ull;
    for (int64_t j = 0; j < D; ++j) {
      uint64_t b;
      std::memcpy(&b, row + 8 * j, 8);
      uint64_t a = b & 0x7fffffffffffffffull;
      mx = a > mx ? a : mx;
    }
  } else {
    inf_bits = T == DType::f16 ? 0x7c00u : 0x7f80u;
    for (int64_t j = 0; j < D; ++j) {
      uint16_t b;
      std::memcpy(&b, row + 2 * j, 2);
      uint64_t a = b & 0x7fffu;
      mx = a > mx ? a : mx;
    }
  }
  out->bad_col = -1;
  if (mx >= inf_bits) {
    double m = 0;
    for (int64_t j = 0; j < D; ++j) {
      double v = elem<T>(row, j);
      if (!std::isfinite(v)) {
        if (out->bad_col < 0) out->bad_col = j;
      } else {
        m = std::max(m, std::fabs(v));
      }
    }
    out->max_abs = m;
    out->sumsq = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  // decode the largest magnitude
  if constexpr (T == DType::f32) {
    uint32_t b = static_cast<uint32_t>(mx);
    float f;
    std::memcpy(&f, &b, 4);
    out->max_abs = f;
  } else if constexpr (T == DType::f64) {
    double f;
    std::memcpy(&f, &mx, 8);
    out->max_abs = f;
  } else {
    uint16_t b = static_cast<uint16_t>(mx);
    char tmp[2];
    std::memcpy(tmp, &b, 2);
    out->max_abs = elem<T>(tmp, 0);
  }
  // sum of squares = squared distance to the origin, in float64
  double acc = 0;
  const int64_t Dfull = D - D % D::W;
  typename D::V a = D::zero();
  for (int64_t j = 0; j < Dfull; j += D::W) {
    typename D::V v = D::template load<T>(row, j);
    a = D::fmadd(v, v, a);
  }
  acc = D::reduce_add(a);
  for (int64_t j = Dfull; j < D; ++j) {
    double v = elem<T>(row, j);
    acc += v * v;
  }
  out->sumsq = acc;
}

static void row_facts(DType dtype, const char* row, int64_t D, RowFacts* out) {
  switch (dtype) {
    case DType::f32: return row_facts_t<DType::f32>(row, D, out);
    case DType::f16: return row_facts_t<DType::f16>(row, D, out);
    case DType::bf16: return row_facts_t<DType::bf16>(row, D, out);
    case DType::f64: return row_facts_t<DType::f64>(row, D, out);
  }
}

template <DType T>
static int64_t nonfinite_col_t(const char* row, int64_t D) {
  // the largest magnitude bits; NaN/Inf have the largest (see row_facts_t)
  uint64_t mx = 0, inf_bits;
  if constexpr (T == DType::f32) {
    inf_bits = 0x7f800000u;
    for (int64_t j = 0; j < D; ++j) {
      uint32_t b;
      std::memcpy(&b, row + 4 * j, 4);
      uint32_t a = b & 0x7fffffffu;
      mx = a > mx ? a : mx;
    }
  } else if constexpr (T == DType::f64) {
    inf_bits = 0x7ff0000000000000ull;
    for (int64_t j = 0; j < D; ++j) {
      uint64_t b;
      std::memcpy(&b, row + 8 * j, 8);
      uint64_t a = b & 0x7fffffffffffffffull;
      mx = a > mx ? a : mx;
    }
  } else {
    inf_bits = T == DType::f16 ? 0x7c00u : 0x7f80u;
    uint32_t m16 = 0;
    for (int64_t j = 0; j < D; ++j) {
      uint16_t b;
      std::memcpy(&b, row + 2 * j, 2);
      uint32_t a = b & 0x7fffu;
      m16 = a > m16 ? a : m16;
    }
    mx = m16;
  }
  if (mx < inf_bits) return -1;
  for (int64_t j = 0; j < D; ++j)
    if (!std::isfinite(elem<T>(row, j))) return j;
  return -1;
}

static int64_t nonfinite_col(DType dtype, const char* row, int64_t D) {
  switch (dtype) {
    case DType::f32: return nonfinite_col_t<DType::f32>(row, D);
    case DType::f16: return nonfinite_col_t<DType::f16>(row, D);
    case DType::bf16: return nonfinite_col_t<DType::bf16>(row, D);
    case DType::f64: return nonfinite_col_t<DType::f64>(row, D);
  }
  return -1;
}

// ----------------------------------------------------------- uncertainty --
// The fast pass and the float64 formulas of svp/uncertainty_exact.h.
// (GCC 12 flags the undefined pass-through operand inside the AVX-512
// conversion and reduction intrinsics as uninitialized: a false positive.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// The last n < W entries of a row as float32 lanes, the rest set to fill
// (AVX-512: one masked load instead of a copy through memory).
template <DType T>
static inline F::V unc_load_tail(const char* row, int64_t j, int64_t n, float fill) {
#if defined(SVP_ISA_AVX512)
  if constexpr (T != DType::f64) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    const __m512 f = _mm512_set1_ps(fill);
    if constexpr (T == DType::f32) {
      return _mm512_mask_loadu_ps(f, m, reinterpret_cast<const float*>(row) + j);
    } else {
      const __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * j);
      const __m512 v = T == DType::f16
                           ? _mm512_cvtph_ps(h)
                           : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      return _mm512_mask_mov_ps(f, m, v);
    }
  }
#endif
  return load_tail<F, T>(row, j, n, fill);
}

// A bound (>= 0) as a float, never below the double it came from.
static inline float round_up_to_float(double e) {
  float f = static_cast<float>(e);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += static_cast<double>(f) < e;  // one float32 ulp up (no branch: half the rows)
  std::memcpy(&f, &bits, 4);
  return f;
}

// The largest and (margin) second largest entry of a row, as a multiset
// (top2 == top1 when the largest is repeated), in lanes of I; with `low`, also
// the smallest entry.
template <class I, DType T>
static void row_top2(const char* x, int64_t C, bool want2, typename I::S* top1,
                     typename I::S* top2, typename I::S* low = nullptr) {
  using V = typename I::V;
  using S = typename I::S;
  constexpr int W = I::W;
  const int64_t Cfull = C - C % W;
  const S ninf = -std::numeric_limits<S>::infinity();
  V m1 = I::set1(ninf), m2 = I::set1(ninf), mn = I::set1(-ninf);
  for (int64_t j = 0; j < Cfull; j += W) {
    V v = I::template load<T>(x, j);
    if (want2) m2 = I::max(m2, I::min(m1, v));
    m1 = I::max(m1, v);
    if (low) mn = I::min(mn, v);
  }
  S t1 = I::reduce_max(m1), t2 = ninf;
  if (want2) {
    // the second largest of the multiset {lane maxima} U {lane second maxima}:
    // drop one instance of t1, take the largest of the rest
    alignas(64) S a1[W], a2[W];
    I::store(a1, m1);
    I::store(a2, m2);
    bool seen_top = false;
    for (int i = 0; i < W; ++i) {
      if (a1[i] == t1 && !seen_top) {
        seen_top = true;
      } else {
        t2 = std::max(t2, a1[i]);
      }
      t2 = std::max(t2, a2[i]);
    }
  }
  S lo = -ninf;
  if (low && Cfull > 0) lo = -I::reduce_max(I::sub(I::zero(), mn));
  for (int64_t j = Cfull; j < C; ++j) {
    const S v = static_cast<S>(elem<T>(x, j));
    if (v > t1) {
      t2 = t1;
      t1 = v;
    } else if (v > t2) {
      t2 = v;
    }
    lo = std::min(lo, v);
  }
  *top1 = t1;
  *top2 = t2;
  if (low) *low = lo;
}

// The float64 formulas for one row (valid input). Float64 lanes: gaps z - m
// (exact for float32/16/bf16 entries), a float64 exp, float64 sums.
template <DType T>
static unc::KeyBound exact_row(const char* x, int64_t C, UncertaintyMethod method,
                               ScoreInput input) {
  using V = D::V;
  constexpr int W = D::W;
  const int64_t Cfull = C - C % W;
  const double ninf = -std::numeric_limits<double>::infinity();
  const bool entropy = method == UncertaintyMethod::entropy;
  double top1, top2;
  row_top2<D, T>(x, C, method == UncertaintyMethod::margin || input == ScoreInput::probs, &top1,
                 &top2);
  if (input == ScoreInput::probs) {
    double H = 0;
    if (entropy) {
      for (int64_t j = 0; j < C; ++j) {
        const double p = elem<T>(x, j);
        if (p > 0) H -= p * std::log(p);
      }
    }
    return unc::exact_probs(method, top1, C > 1 ? top2 : 0.0, H);
  }
  const V mv = D::set1(top1), floor_d = D::set1(-1.0e4);
  V t = D::zero(), uacc = D::zero();
  D::Count n_neg = D::count_zero();
  int64_t lanes = 0;
  auto add = [&](V z) {
    const V d = D::sub(z, mv);
    const V e = D::vexp(d);
    t = D::add_if_neg(t, d, e, n_neg);
    lanes += W;
    if (entropy) uacc = D::fnmadd(e, D::max(d, floor_d), uacc);  // e (m - z); e = 0 below -746
  };
  for (int64_t j = 0; j < Cfull; j += W) add(D::template load<T>(x, j));
  if (Cfull < C) add(load_tail<D, T>(x, Cfull, C - Cfull, ninf));
  const double gap2 = C > 1 ? top2 - top1 : ninf;
  // the lanes not below the maximum hold it (pads are -inf)
  return unc::exact_logits(method, D::reduce_add(t),
                           static_cast<double>(lanes - D::count_total(n_neg)),
                           D::reduce_add(uacc), gap2);
}

template <DType T>
static void exact_rows_t(const char* const* rows, int64_t n, int64_t C, UncertaintyMethod method,
                         ScoreInput input, double* score, double* key) {
  // The rows (the refinement's) lie anywhere in memory: each would start a cold
  // stream; fetching the next one while this one computes hides that.
  [[maybe_unused]] const int64_t row_bytes = C * static_cast<int64_t>(dtype_size(T));
  for (int64_t r = 0; r < n; ++r) {
#if defined(SVP_ISA_AVX512) || defined(SVP_ISA_AVX2)
    if (r + 1 < n)
      for (int64_t b = 0; b < row_bytes; b += 64) _mm_prefetch(rows[r + 1] + b, _MM_HINT_T0);
#endif
    const unc::KeyBound kb = exact_row<T>(rows[r], C, method, input);
    score[r] = kb.score;
    if (key) key[r] = kb.key;
  }
}

static void exact_rows(DType dtype, const char* const* rows, int64_t n, int64_t C,
                       UncertaintyMethod method, ScoreInput input, double /*probs_tolerance*/,
                       double* score, double* key) {
  switch (dtype) {
    case DType::f32: return exact_rows_t<DType::f32>(rows, n, C, method, input, score, key);
    case DType::f16: return exact_rows_t<DType::f16>(rows, n, C, method, input, score, key);
    case DType::bf16: return exact_rows_t<DType::bf16>(rows, n, C, method, input, score, key);
    case DType::f64: return exact_rows_t<DType::f64>(rows, n, C, method, input, score, key);
  }
}

// Is a row a distribution within tol (every entry >= -tol, |sum - 1| <= tol)?
// The sum in float64.
template <DType T>
static bool row_is_distribution(const char* x, int64_t C, double tol) {
  double lo = std::numeric_limits<double>::infinity(), total = 0;
  using V = D::V;
  constexpr int W = D::W;
  const int64_t Cfull = C - C % W;
  V s = D::zero(), mn = D::set1(lo);
  for (int64_t j = 0; j < Cfull; j += W) {
    const V v = D::template load<T>(x, j);
    s = D::add(s, v);
    mn = D::min(mn, v);
  }
  total = D::reduce_add(s);
  if (Cfull > 0) lo = -D::reduce_max(D::sub(D::zero(), mn));
  for (int64_t j = Cfull; j < C; ++j) {
    const double v = elem<T>(x, j);
    total += v;
    lo = std::min(lo, v);
  }
  return !(lo < -tol || std::fabs(total - 1.0) > tol);  // NaN (unchecked input) passes
}

// The fast pass for float32/16/bf16 rows in float32 lanes; each row is swept
// twice (the maximum, then the sums), the second sweep from L1. The sums that
// make a key add kUncFlushVectors vectors in float32, then go to float64.
// Instantiated per method: the loop holds only that method's work.
// The sums of one row for unc::fast_logits.
struct FastSums {
  double sum, U, V, gap2;
};

template <DType T, UncertaintyMethod M>
static FastSums fast_logits_sums(const char* x, int64_t C) {
  using I = F;
  using V = I::V;
  constexpr int W = I::W;
  constexpr bool entropy = M == UncertaintyMethod::entropy;
  // margin needs only S: every term, no mask (the maxima add exactly 1 each)
  constexpr bool masked = M != UncertaintyMethod::margin;
  const int64_t Cfull = C - C % W;
  float top1, top2, low = 0;
  row_top2<I, T>(x, C, M == UncertaintyMethod::margin, &top1, &top2, entropy ? &low : nullptr);
  const V mv = I::set1(top1), clamp = I::set1(-kFastClamp);
  D::V t_lo = D::zero(), t_hi = D::zero(), u_lo = D::zero(), u_hi = D::zero();
  V tb = I::zero(), ub = I::zero();
  I::Count n_neg = I::count_zero();
  auto add = [&](V z) {
    const V d = I::sub(z, mv);  // x_j = fl32(z_j - m)
    // clamped to [-104, 0]: e^-104 rounds to 0, and 0 * inf stays out of U
    const V dc = I::max(d, clamp);
    const V e = I::vexp(dc);
    if constexpr (masked) {
      tb = I::add_if_neg(tb, d, e, n_neg);
    } else {
      tb = I::add(tb, e);
    }
    if constexpr (entropy) ub = I::fnmadd(e, dc, ub);  // U = sum e a, a = min(m - z, 104)
  };
  auto flush = [&] {
    widen_add(t_lo, t_hi, tb);
    if constexpr (entropy) widen_add(u_lo, u_hi, ub);
    tb = ub = I::zero();
  };
  int64_t j = 0;
  for (; j + kUncFlushVectors * W <= Cfull; j += kUncFlushVectors * W) {
    for (int b = 0; b < kUncFlushVectors; ++b) add(I::template load<T>(x, j + b * W));
    flush();
  }
  for (; j < Cfull; j += W) add(I::template load<T>(x, j));
  int64_t lanes = Cfull;
  // pad with -inf: exp() is 0 there (a finite pad could exceed the row's own
  // maximum: logits below -1e30)
  if (Cfull < C) {
    add(unc_load_tail<T>(x, Cfull, C - Cfull, -std::numeric_limits<float>::infinity()));
    lanes += W;
  }
  flush();
  const double gap2 = C > 1 ? static_cast<double>(top2) - static_cast<double>(top1)
                            : -std::numeric_limits<double>::infinity();
  double sum = D::reduce_add(D::add(t_lo, t_hi));
  // the lanes not below the maximum hold it (pads are -inf): T = T1 + n_max - 1
  if constexpr (masked) sum += static_cast<double>(lanes - I::count_total(n_neg) - 1);
  // V = sum e a^2 (entropy's bound only) <= a_max U, a_max the row's largest gap
  const double U = entropy ? D::reduce_add(D::add(u_lo, u_hi)) : -1.0;
  const double a_max = std::min(static_cast<double>(kFastClamp),
                                static_cast<double>(top1) - static_cast<double>(low));
  return {sum, U, entropy ? a_max * U * (1.0 + 1e-12) : 0.0, gap2};
}

// Probabilities: validate (min, sum) and score in one sweep. Returns false for
// a row that is not a distribution within tol. need_exact: a row with an entry
// above 1 (entropy terms of both signs): the float64 formulas score it.
template <DType T>
static bool fast_probs_row(const char* x, int64_t C, UncertaintyMethod method, double tol,
                           const unc::FastModel& fm, const unc::TieModel& tie,
                           unc::KeyBound* kb, bool* need_exact) {
  using I = F;
  using V = I::V;
  constexpr int W = I::W;
  const bool entropy = method == UncertaintyMethod::entropy;
  const int64_t Cfull = C - C % W;
  const float ninf = -std::numeric_limits<float>::infinity();
  D::V t_lo = D::zero(), t_hi = D::zero(), u_lo = D::zero(), u_hi = D::zero();
  V tb = I::zero(), ub = I::zero();
  V m1 = I::set1(ninf), m2 = I::set1(ninf), mn = I::set1(std::numeric_limits<float>::infinity());
  const V tiny = I::set1(std::numeric_limits<float>::min());
  auto body = [&](V v) {
    m2 = I::max(m2, I::min(m1, v));
    m1 = I::max(m1, v);
    mn = I::min(mn, v);
    tb = I::add(tb, v);
    if (entropy) {
      // -p log p, with 0 for p below the smallest normal (and p <= 0)
      const V pl = I::mul(v, I::vlog(I::max(v, tiny)));
      ub = I::sub(ub, I::select_gt(v, tiny, pl, I::zero()));
    }
  };
  auto flush = [&] {
    widen_add(t_lo, t_hi, tb);
    if (entropy) widen_add(u_lo, u_hi, ub);
    tb = ub = I::zero();
  };
  int64_t j = 0;
  for (; j + kUncFlushVectors * W <= Cfull; j += kUncFlushVectors * W) {
    for (int b = 0; b < kUncFlushVectors; ++b) body(I::template load<T>(x, j + b * W));
    flush();
  }
  for (; j < Cfull; j += W) body(I::template load<T>(x, j));
  flush();
  float top1 = I::reduce_max(m1), top2 = ninf;
  {
    alignas(64) float a1[W], a2[W];
    I::store(a1, m1);
    I::store(a2, m2);
    bool seen_top = false;
    for (int i = 0; i < W; ++i) {
      if (a1[i] == top1 && !seen_top) seen_top = true;
      else top2 = std::max(top2, a1[i]);
      top2 = std::max(top2, a2[i]);
    }
  }
  double lo = Cfull > 0 ? -I::reduce_max(I::sub(I::zero(), mn))
                        : std::numeric_limits<double>::infinity();
  double total = D::reduce_add(D::add(t_lo, t_hi));
  double H = entropy ? D::reduce_add(D::add(u_lo, u_hi)) : 0.0;
  for (; j < C; ++j) {
    const float v = static_cast<float>(elem<T>(x, j));
    if (v > top1) {
      top2 = top1;
      top1 = v;
    } else if (v > top2) {
      top2 = v;
    }
    lo = std::min(lo, static_cast<double>(v));
    total += v;
    if (entropy && v > std::numeric_limits<float>::min()) {
      alignas(64) float b[W];
      I::store(b, I::mul(I::set1(v), I::vlog(I::set1(v))));  // the lanes' log, not libm's
      H -= b[0];
    }
  }
  if (lo < -tol || std::fabs(total - 1.0) > tol) return false;
  if (entropy) {
    *need_exact = top1 > 1.0f;
    *kb = unc::fast_probs_entropy(C, H, fm, tie);
  } else {
    *kb = unc::exact_probs(method, top1, C > 1 ? top2 : 0.0f, 0.0);  // already float64 values
  }
  return true;
}

template <DType T, UncertaintyMethod M>
static int64_t fast_logits_rows(const char* const* rows, int64_t n, int64_t C, double tol,
                                double* score, double* key, float* err) {
  const unc::FastPlan plan =
      unc::fast_plan(M, C, cpu_fast_model(C), unc::tie_model(M, ScoreInput::logits, C, tol));
  // the sums of a group of rows first, then their scalar epilogues: these are
  // independent, so their latency (log1p, expm1, divisions) overlaps
  constexpr int64_t kGroup = 16;
  FastSums sums[kGroup];
  for (int64_t r0 = 0; r0 < n; r0 += kGroup) {
    const int64_t cnt = std::min(kGroup, n - r0);
    for (int64_t i = 0; i < cnt; ++i) sums[i] = fast_logits_sums<T, M>(rows[r0 + i], C);
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t r = r0 + i;
      unc::KeyBound kb = unc::fast_logits<M>(plan, sums[i].sum, sums[i].U, sums[i].V, sums[i].gap2);
      if (!(kb.err < std::numeric_limits<double>::infinity()))
        kb = exact_row<T>(rows[r], C, M, ScoreInput::logits);
      score[r] = kb.score;
      if (key) {
        key[r] = kb.key;
        err[r] = round_up_to_float(kb.err);
      }
    }
  }
  return -1;
}

template <DType T>
static int64_t score_rows_f(const char* const* rows, int64_t n, int64_t C,
                            UncertaintyMethod method, ScoreInput input, double tol,
                            double* score, double* key, float* err) {
  if (input == ScoreInput::logits) {
    switch (method) {
      case UncertaintyMethod::least_confidence:
        return fast_logits_rows<T, UncertaintyMethod::least_confidence>(rows, n, C, tol, score, key, err);
      case UncertaintyMethod::entropy:
        return fast_logits_rows<T, UncertaintyMethod::entropy>(rows, n, C, tol, score, key, err);
      case UncertaintyMethod::margin:
        return fast_logits_rows<T, UncertaintyMethod::margin>(rows, n, C, tol, score, key, err);
    }
  }
  const unc::FastModel fm = cpu_fast_model(C);
  const unc::TieModel tie = unc::tie_model(method, input, C, tol);
  for (int64_t r = 0; r < n; ++r) {
    unc::KeyBound kb;
    bool need_exact = false;
    if (!fast_probs_row<T>(rows[r], C, method, tol, fm, tie, &kb, &need_exact)) return r;
    if (need_exact) kb = exact_row<T>(rows[r], C, method, input);
    score[r] = kb.score;
    if (key) {
      key[r] = kb.key;
      err[r] = round_up_to_float(kb.err);
    }
  }
  return -1;
}

// float64 rows: the float64 formulas are the fast pass (err = 0).
static int64_t score_rows_d(const char* const* rows, int64_t n, int64_t C,
                            UncertaintyMethod method, ScoreInput input, double tol,
                            double* score, double* key, float* err) {
  for (int64_t r = 0; r < n; ++r) {
    if (input == ScoreInput::probs && !row_is_distribution<DType::f64>(rows[r], C, tol)) return r;
    const unc::KeyBound kb = exact_row<DType::f64>(rows[r], C, method, input);
    score[r] = kb.score;
    if (key) {
      key[r] = kb.key;
      err[r] = 0.0f;
    }
  }
  return -1;
}

static int64_t score_rows(DType dtype, const char* const* rows, int64_t n, int64_t C,
                          UncertaintyMethod method, ScoreInput input, double tol, double* score,
                          double* key, float* err) {
  switch (dtype) {
    case DType::f32: return score_rows_f<DType::f32>(rows, n, C, method, input, tol, score, key, err);
    case DType::f16: return score_rows_f<DType::f16>(rows, n, C, method, input, tol, score, key, err);
    case DType::bf16: return score_rows_f<DType::bf16>(rows, n, C, method, input, tol, score, key, err);
    case DType::f64: return score_rows_d(rows, n, C, method, input, tol, score, key, err);
  }
  return -1;
}

// The elementary functions of the fast pass on n values (tests of their bounds).
static void unc_function(int which, const void* in, int64_t n, void* out) {
  if (which == 2) {
    const double* x = static_cast<const double*>(in);
    double* y = static_cast<double*>(out);
    alignas(64) double buf[D::W];
    for (int64_t i = 0; i < n; i += D::W) {
      const int64_t m = std::min<int64_t>(D::W, n - i);
      for (int64_t k = 0; k < D::W; ++k) buf[k] = k < m ? x[i + k] : 0.0;
      D::store(buf, D::vexp(D::loadc(buf)));
      for (int64_t k = 0; k < m; ++k) y[i + k] = buf[k];
    }
    return;
  }
  const float* x = static_cast<const float*>(in);
  float* y = static_cast<float*>(out);
  alignas(64) float buf[F::W];
  for (int64_t i = 0; i < n; i += F::W) {
    const int64_t m = std::min<int64_t>(F::W, n - i);
    for (int64_t k = 0; k < F::W; ++k) buf[k] = k < m ? x[i + k] : (which == 0 ? 0.0f : 1.0f);
    const F::V v = F::loadc(buf);
    F::store(buf, which == 0 ? F::vexp(v) : F::vlog(v));
    for (int64_t k = 0; k < m; ++k) y[i + k] = buf[k];
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// ------------------------------------------------------------ annulus --

static int64_t annulus(const float* m, const double* p, const double* q0, const double* q1,
                       int64_t n, double dc, double dq0, double dq1, double krel, double down,
                       int64_t base, float* m2, int64_t* keep) {
  int64_t cnt = 0;
  int64_t i = 0;
#if defined(SVP_ISA_AVX512)
  // eight members per iteration, the bound of the scalar loop below (each is
  // safe on its own: krel covers the rounding, FMA contraction or not)
  const __m512d vdc = _mm512_set1_pd(dc), vkrel = _mm512_set1_pd(krel);
  const __m512d vdq0 = _mm512_set1_pd(dq0), vdq1 = _mm512_set1_pd(dq1);
  // |d - x| - krel (d + x): the bound of one reference point
  auto bound = [&](__m512d vd, __m512d xv) {
    return _mm512_sub_pd(_mm512_abs_pd(_mm512_sub_pd(vd, xv)),
                         _mm512_mul_pd(vkrel, _mm512_add_pd(vd, xv)));
  };
  const __m512d vdown = _mm512_set1_pd(down), zero = _mm512_setzero_pd();
  const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  for (; i < n; i += 8) {
    const __mmask8 tail = i + 8 <= n ? __mmask8(0xFF) : __mmask8((1u << (n - i)) - 1);
    const __m512d pv = _mm512_maskz_loadu_pd(tail, p + i);
    const __m256 mf = _mm256_maskz_loadu_ps(tail, m + i);
    const __m512d mv = _mm512_cvtps_pd(mf);
    const __m512d lb = _mm512_max_pd(
        bound(vdc, pv), _mm512_max_pd(bound(vdq0, _mm512_maskz_loadu_pd(tail, q0 + i)),
                                      bound(vdq1, _mm512_maskz_loadu_pd(tail, q1 + i))));
    const __m512d lb2 = _mm512_mul_pd(lb, lb);
    const __mmask8 live = _mm512_mask_cmp_pd_mask(tail, mv, zero, _CMP_GE_OQ);
    const __mmask8 ruled = _mm512_cmp_pd_mask(lb, zero, _CMP_GT_OQ) &
                           _mm512_cmp_pd_mask(lb2, mv, _CMP_GE_OQ);
    const __mmask8 surv = live & static_cast<__mmask8>(~ruled);
    const __m256 l2 = _mm512_cvtpd_ps(_mm512_mul_pd(lb2, vdown));
    const __m256 cur = _mm256_maskz_loadu_ps(tail, m2 + i);
    const __mmask8 lower = (live & ruled) & _mm256_cmp_ps_mask(l2, cur, _CMP_LT_OQ);
    _mm256_mask_storeu_ps(m2 + i, lower, l2);
    const __m512i idx = _mm512_add_epi64(_mm512_set1_epi64(base + i), lane);
    _mm512_mask_compressstoreu_epi64(keep + cnt, surv, idx);
    cnt += __builtin_popcount(static_cast<unsigned>(surv));
  }
#endif
  for (; i < n; ++i) {
    const float mq = m[i];
    const double lb = std::max(std::fabs(dc - p[i]) - krel * (dc + p[i]),
                               std::max(std::fabs(dq0 - q0[i]) - krel * (dq0 + q0[i]),
                                        std::fabs(dq1 - q1[i]) - krel * (dq1 + q1[i])));
    const double lb2 = lb * lb;
    const bool live = mq >= 0.0f;  // excluded members hold -1
    const bool ruled = (lb > 0) & (lb2 >= static_cast<double>(mq));
    const float l2 = static_cast<float>(lb2 * down);
    if (live & ruled & (l2 < m2[i])) m2[i] = l2;
    keep[cnt] = base + i;
    cnt += static_cast<int64_t>(live & !ruled);
  }
  return cnt;
}

// --------------------------------------------------------------- max2 --

// Per lane the largest and second largest seen, then the best two of the
// 2W lane values: a vector pass where a Top2 per member cost a branch.
static void max2(const float* m, int64_t n, float* out) {
  using V = F::V;
  constexpr int W = F::W;
  V a = F::set1(-1.0f), b = F::set1(-1.0f);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const V v = F::loadc(m + i);
    b = F::max(b, F::min(a, v));
    a = F::max(a, v);
  }
  alignas(64) float la[W], lb[W];
  F::store(la, a);
  F::store(lb, b);
  float v1 = -1.0f, v2 = -1.0f;
  auto take = [&](float v) {
    if (v > v1) {
      v2 = v1;
      v1 = v;
    } else if (v > v2) {
      v2 = v;
    }
  };
  for (int l = 0; l < W; ++l) {
    take(la[l]);
    take(lb[l]);
  }
  for (; i < n; ++i) take(m[i]);
  out[0] = v1;
  out[1] = v2;
}

}  // namespace SVP_ISA_NS
}  // namespace cpu
}  // namespace svp
