#include "product_screen.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <cmath>
#include <limits>
#include <type_traits>

namespace svp {

namespace {

std::atomic<int64_t> g_min_cols{ProductTuning().min_cols};
std::atomic<int64_t> g_min_centers{ProductTuning().min_centers};
std::atomic<int64_t> g_center_block{ProductTuning().center_block};

}  // namespace

ProductTuning product_tuning() {
  ProductTuning t;
  t.min_cols = g_min_cols.load();
  t.min_centers = g_min_centers.load();
  t.center_block = g_center_block.load();
  return t;
}

ProductTuning set_product_tuning(const ProductTuning& t) {
  const ProductTuning old = product_tuning();
  if (t.min_cols >= 1) g_min_cols = t.min_cols;
  if (t.min_centers >= 1) g_min_centers = t.min_centers;
  if (t.center_block >= 1) g_center_block = t.center_block;
  return old;
}

namespace cpu {

namespace {
constexpr double kU64 = 1.1102230246251565e-16;  // 2^-53

// The screen of one row against nc centers: flag[c] = 1 where the pair may
// change the row (NaN never skips); returns how many. Branch-free, compiled
// for AVX-512, AVX2 and the baseline (a compare and a multiply-add a pair:
// the margins of the bound cover a contraction's rounding).
template <typename Acc>
inline int64_t screen_row_impl(const Acc* __restrict t, const double* __restrict cf, int64_t nc,
                               double a, double b, double R, uint8_t* __restrict flag) {
  int64_t hits = 0;
  for (int64_t c = 0; c < nc; ++c) {
    const double val = cf[2 * c] + a * static_cast<double>(t[c]) - b * cf[2 * c + 1];
    const uint8_t f = !(val >= R);
    flag[c] = f;
    hits += f;
  }
  return hits;
}
__attribute__((target_clones("avx512f", "avx2", "default"))) int64_t screen_row(
    const float* t, const double* cf, int64_t nc, double a, double b, double R, uint8_t* flag) {
  return screen_row_impl(t, cf, nc, a, b, R, flag);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) int64_t screen_row(
    const double* t, const double* cf, int64_t nc, double a, double b, double R, uint8_t* flag) {
  return screen_row_impl(t, cf, nc, a, b, R, flag);
}
}  // namespace

template <typename Acc>
ProductScreen<Acc>::ProductScreen(const RowSource<Acc>& src, int threads)
    : src_(src), threads_(std::max(threads, 1)), cosine_(src.scale != nullptr) {
  const bool f64 = std::is_same<Acc, double>::value;
  const int64_t D = src.X.cols;
  fast_ = svp::error_model(f64, cosine_ ? Metric::cosine : Metric::euclidean, D);
  const double u = f64 ? kU64 : 5.9604644775390625e-08;
  const double tiny = f64 ? 8.289046e-317 : 3.5873241e-43;  // as svp/exactness.h
  const int64_t lanes = f64 ? 4 : 8;
  const double terms = static_cast<double>((D + lanes - 1) / lanes) + 10.0;
  const double gamma = 1.01 * terms * u;
  const double d = static_cast<double>(D);
  k_norm_ = 2.0 * 1.01 * (d + 16.0) * kU64;
  if (!cosine_) {
    k_dot_ = 2.0 * 2.0 * gamma;
    k_tiny_ = 2.0 * 2.0 * (d + 2.0) * tiny;
  } else {
    const double rho = u + (0.5 * d + 3.0) * kU64;
    const double kappa = gamma * (1.0 + rho) + rho + (0.5 * d + 4.0) * kU64;
    k_cos_ = 2.0 * 2.0 * kappa + 32.0 * kU64;
    k_tiny_ = 2.0 * 2.0 * (d + 2.0) * tiny * (1.0 + rho);
  }
}

template <typename Acc>
bool ProductScreen<Acc>::worth(int64_t q) const {
  const ProductTuning t = product_tuning();
  return src_.X.cols >= t.min_cols && q >= t.min_centers;
}

template <typename Acc>
void ProductScreen<Acc>::prepare() {
  if (cosine_ || !nx2_.empty()) return;
  const int64_t n = src_.X.rows, D = src_.X.cols;
  nx2_.resize(static_cast<size_t>(n));
  nxu_.resize(static_cast<size_t>(n));
  const double up = 1.0 + 2.0 * (static_cast<double>(D) + 8.0) * kU64;
#pragma omp parallel for num_threads(threads_) schedule(static) if (n * D > (1 << 18))
  for (int64_t i = 0; i < n; ++i) {
    RowFacts f;
    src_.k->row_facts(src_.X.dtype, src_.X.row(i), D, &f);
    nx2_[i] = f.sumsq;
    nxu_[i] = std::sqrt(f.sumsq) * up;
  }
}

template <typename Acc>
void ProductScreen<Acc>::center_facts(const CenterRef* centers, int64_t nc, double* cf) const {
  const int64_t D = src_.X.cols;
  const double up = 1.0 + 2.0 * (static_cast<double>(D) + 8.0) * kU64;
  for (int64_t c = 0; c < nc; ++c) {
    if (cosine_) {
      cf[2 * c] = cf[2 * c + 1] = 0;
      continue;
    }
    double s;
    if (centers[c].row >= 0 && !nx2_.empty()) {
      s = nx2_[static_cast<size_t>(centers[c].row)];
    } else {
      RowFacts f;
      src_.k->row_facts(src_.X.dtype, centers[c].raw, D, &f);
      s = f.sumsq;
    }
    cf[2 * c] = s * (1.0 - k_norm_);
    cf[2 * c + 1] = std::sqrt(s) * up;
  }
}

template <typename Acc>
int64_t ProductScreen<Acc>::apply(const int64_t* ids, const char* const* rows, const Acc* scale,
                                  int64_t nr, const Acc* cvec, int64_t ldc, const double* cf,
                                  int64_t nc, const int64_t* ords, const int64_t* first, Acc* m,
                                  Acc* m2, int64_t* assign, Scratch& s) const {
  if (nr <= 0 || nc <= 0) return 0;
  const int64_t D = src_.X.cols;
  const DType dt = src_.X.dtype;
  s.dots.resize(static_cast<size_t>(nr * nc));
  if constexpr (std::is_same<Acc, float>::value)
    src_.k->dot_block_f32(dt, rows, nr, cvec, ldc, nc, D, s.dots.data(), nc);
  else
    src_.k->dot_block_f64(dt, rows, nr, cvec, ldc, nc, D, s.dots.data(), nc);
  // The screen: per row, skip iff cf0[c] + a t - b cf1[c] >= R (see the header);
  // NaN (float64 squares that overflow) never skips.
  s.hit_count.assign(static_cast<size_t>(nc), 0);
  s.flags.resize(static_cast<size_t>(nc));
  s.pairs.clear();
  std::vector<int32_t>& pairs = s.pairs;  // (c, r) of the hits, row after row
  for (int64_t r = 0; r < nr; ++r) {
    if (!(m[r] >= Acc(0))) continue;  // excluded
    const double m2r = static_cast<double>(m2[r]);
    const double thr = m2r + fast_.E(m2r);
    double a, b, R;
    if (!cosine_) {
      const double x2 = nx2_[static_cast<size_t>(ids[r])];
      a = -2.0;
      b = (k_dot_ + 2.0 * k_norm_) * nxu_[static_cast<size_t>(ids[r])];
      R = thr - x2 + k_norm_ * (x2 + std::fabs(thr)) + k_tiny_;
    } else {
      const double inv = 1.0 / src_.norm64[ids[r]];
      a = -2.0 * inv;
      b = 0;
      R = thr - 2.0 + k_cos_ + k_tiny_ * inv + 4.0 * kU64 * std::fabs(thr);
    }
    const int64_t from = first ? first[r] : std::numeric_limits<int64_t>::min();
    if (screen_row(s.dots.data() + r * nc, cf, nc, a, b, R, s.flags.data()) == 0) continue;
    for (int64_t c = 0; c < nc; ++c) {
      if (s.flags[c] && ords[c] >= from) {
        pairs.push_back(static_cast<int32_t>(c));
        pairs.push_back(static_cast<int32_t>(r));
        ++s.hit_count[static_cast<size_t>(c)];
      }
    }
  }
  const int64_t hits = static_cast<int64_t>(pairs.size() / 2);
  if (hits == 0) return 0;
  // the hits center by center (counting sort), rows ascending within each
  s.hit_start.assign(static_cast<size_t>(nc + 1), 0);
  for (int64_t c = 0; c < nc; ++c) s.hit_start[c + 1] = s.hit_start[c] + s.hit_count[c];
  s.sorted_rows.resize(static_cast<size_t>(hits));  // the rows, grouped by center
  s.pos.assign(s.hit_start.begin(), s.hit_start.end() - 1);
  for (int64_t h = 0; h < hits; ++h) {
    const int32_t c = pairs[2 * h], r = pairs[2 * h + 1];
    s.sorted_rows[static_cast<size_t>(s.pos[c]++)] = r;
  }
  // the fast kernel's distances, center by center (ascending ordinals: every
  // row sees its updates in the order the plain engines apply them)
  const D2RowsFn<Acc> d2 = src_.d2();
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t lo = s.hit_start[c], cnt = s.hit_start[c + 1] - lo;
    if (cnt == 0) continue;
    s.hit_ptr.resize(static_cast<size_t>(cnt));
    s.hit_val.resize(static_cast<size_t>(cnt));
    if (scale) s.hit_scale.resize(static_cast<size_t>(cnt));
    for (int64_t h = 0; h < cnt; ++h) {
      const int64_t r = static_cast<int64_t>(s.sorted_rows[lo + h]);
      s.hit_ptr[h] = rows[r];
      if (scale) s.hit_scale[h] = scale[r];
    }
    d2(dt, s.hit_ptr.data(), scale ? s.hit_scale.data() : nullptr, cnt, cvec + c * ldc, D,
       s.hit_val.data());
    for (int64_t h = 0; h < cnt; ++h) {
      const int64_t r = static_cast<int64_t>(s.sorted_rows[lo + h]);
      take_center_distance(s.hit_val[h], ords[c], m[r], m2[r], assign[r]);
    }
  }
  return hits;
}

template class ProductScreen<float>;
template class ProductScreen<double>;

}  // namespace cpu

void dot_block_kernel(const MatrixView& rows, const void* centers, int64_t nc, const char* simd,
                      double* out) {
  const cpu::KernelTable& k = cpu::kernels_or_throw(simd && *simd ? simd : nullptr);
  const int64_t nr = rows.rows, D = rows.cols;
  std::vector<const char*> ptrs(static_cast<size_t>(nr));
  for (int64_t r = 0; r < nr; ++r) ptrs[r] = rows.row(r);
  if (rows.dtype == DType::f64) {
    k.dot_block_f64(rows.dtype, ptrs.data(), nr, static_cast<const double*>(centers), D, nc, D,
                    out, nc);
    return;
  }
  std::vector<float> o(static_cast<size_t>(nr * nc));
  k.dot_block_f32(rows.dtype, ptrs.data(), nr, static_cast<const float*>(centers), D, nc, D,
                  o.data(), nc);
  for (size_t i = 0; i < o.size(); ++i) out[i] = o[i];
}

namespace {
double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
}  // namespace

double measure_product_rate(int64_t D, bool float16, int threads, double seconds,
                            bool per_cpu_second) {
  const cpu::KernelTable& k = cpu::kernels();
  const int nt = threads > 0 ? threads : std::max(1, omp_get_max_threads());
  const int64_t nr = 48, nc = 64;
  const DType dt = float16 ? DType::f16 : DType::f32;
  double total = 0, elapsed = 0;
#pragma omp parallel num_threads(nt) reduction(+ : total) reduction(max : elapsed)
  {
    const size_t es = dtype_size(dt);
    std::vector<char> rows(static_cast<size_t>(nr * D) * es, 0);
    for (size_t i = 0; i < rows.size(); i += 2) rows[i + 1] = 0x3c;  // 1.0 in float16
    if (!float16)
      for (int64_t i = 0; i < nr * D; ++i) reinterpret_cast<float*>(rows.data())[i] = 1.0f;
    std::vector<const char*> ptrs(static_cast<size_t>(nr));
    for (int64_t r = 0; r < nr; ++r) ptrs[r] = rows.data() + static_cast<size_t>(r * D) * es;
    std::vector<float> cen(static_cast<size_t>(nc * D), 0.5f), out(static_cast<size_t>(nr * nc));
    auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_seconds();
    double macs = 0, s = 0;
    while (s < seconds) {
      for (int rep = 0; rep < 8; ++rep) {
        k.dot_block_f32(dt, ptrs.data(), nr, cen.data(), D, nc, D, out.data(), nc);
        macs += static_cast<double>(nr * nc * D);
      }
      s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // per CPU-second: the sum of the threads' rates over the time each ran
    // (what the threads do, whatever else shares the machine); else all the
    // work over the wall time
    total = per_cpu_second ? 2.0 * macs / (thread_cpu_seconds() - c0) : 2.0 * macs;
    elapsed = s;
  }
  return per_cpu_second ? total : total / elapsed;
}

}  // namespace svp
