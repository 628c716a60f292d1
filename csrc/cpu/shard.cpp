#include "svp/shard.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "engine.h"
#include "lazy_engine.h"
#include "prepare.h"
#include "pruned_engine.h"
#include "scan_engine.h"

namespace svp {

namespace {
int threads_of(int requested) {
  return requested > 0 ? requested : std::max(1, omp_get_max_threads());
}
}  // namespace

ShardFacts shard_facts(const MatrixView& X, int num_threads, const char* simd) {
  ShardFacts out;
  out.min_norm = std::numeric_limits<double>::infinity();
  if (X.rows == 0) return out;
  const cpu::KernelTable& k = cpu::kernels_or_throw(simd);
  cpu::MatrixFacts f = cpu::inspect(X, k, threads_of(num_threads), nullptr);
  out.bad_row = f.bad_row;
  out.bad_col = f.bad_col;
  out.bad_value = f.bad_value;
  out.zero_row = f.zero_row;
  out.max_abs = f.max_abs;
  out.min_norm = f.min_norm;
  out.max_norm = f.max_norm;
  return out;
}

bool shard_needs_float64(const ShardFacts& r, DType dtype, Metric metric, int64_t D) {
  cpu::MatrixFacts f;
  f.max_abs = r.max_abs;
  f.min_norm = r.min_norm;
  f.max_norm = r.max_norm;
  return cpu::needs_float64(f, dtype, metric, D);
}

struct KCenterShard::Impl {
  virtual ~Impl() = default;
  virtual void exclude(int64_t) = 0;
  virtual void add_center(const void*, int64_t) = 0;
  virtual void top2(ShardCandidate*, ShardCandidate*) = 0;
  virtual double error_bound(double) const = 0;
  virtual double exact_tolerance(double) const = 0;
  virtual std::vector<ShardBandMember> band(double) = 0;
  virtual double exact_min(const void*, const int64_t*, int64_t) = 0;
  virtual int64_t evals() const = 0;
  int64_t rows = 0;
};

namespace {

template <typename Acc>
struct ShardImpl final : KCenterShard::Impl {
  MatrixView X;
  const cpu::KernelTable* k;
  int threads;
  std::vector<double> norm64;
  std::vector<Acc> scale;
  cpu::RowSource<Acc> src;
  cpu::ErrorModel err, tie;
  std::unique_ptr<cpu::Engine<Acc>> engine;
  int64_t ordinal = 0;

  ShardImpl(const MatrixView& X_, const ShardOptions& opt, const cpu::KernelTable& k_,
            std::vector<double>&& norms)
      : X(X_), k(&k_), threads(threads_of(opt.num_threads)), norm64(std::move(norms)) {
    rows = X.rows;
    src.X = X;
    src.k = k;
    if (opt.metric == Metric::cosine) {
      scale.resize(norm64.size());
      for (size_t i = 0; i < norm64.size(); ++i) scale[i] = static_cast<Acc>(1.0 / norm64[i]);
      src.scale = scale.data();
      src.norm64 = norm64.data();
    }
    tie = svp::exact_tie_model(opt.metric, X.cols);
    err = svp::band_model(svp::error_model(std::is_same<Acc, double>::value, opt.metric, X.cols), tie);
    if (X.rows == 0) return;
    switch (opt.method) {
      case KCenterMethod::pruned:
        engine.reset(new cpu::PrunedEngine<Acc>(src, opt.cells, threads, 2.0, [](int64_t) {}));
        break;
      case KCenterMethod::lazy:
        engine.reset(new cpu::LazyEngine<Acc>(src, threads));
        break;
      default:
        engine.reset(new cpu::ScanEngine<Acc>(src, threads));
    }
  }

  void exclude(int64_t r) override {
    SVP_CHECK_ARG(r >= 0 && r < X.rows, "local_row must be in [0, %lld), got %lld",
                  (long long)X.rows, (long long)r);
    engine->exclude(r);
  }
  void add_center(const void* raw, int64_t local_row) override {
    SVP_CHECK_ARG(local_row >= -1 && local_row < X.rows,
                  "local_row must be -1 or in [0, %lld), got %lld", (long long)X.rows,
                  (long long)local_row);
    const int64_t ord = ordinal++;
    if (!engine) return;
    cpu::CenterRef c{local_row, static_cast<const char*>(raw)};
    if (local_row >= 0) c.raw = X.row(local_row);
    engine->add_centers(&c, &ord, 1);
  }
  void top2(ShardCandidate* a, ShardCandidate* b) override {
    a->index = b->index = -1;
    a->value = b->value = -1;
    if (!engine) return;
    cpu::Top2 t = engine->top2(err);
    a->value = t.v1;
    a->index = t.i1;
    b->value = t.v2;
    b->index = t.i2;
  }
  double error_bound(double v) const override { return err.E(v); }
  double exact_tolerance(double v) const override { return tie.E(v); }
  std::vector<ShardBandMember> band(double thr) override {
    std::vector<ShardBandMember> out;
    if (!engine) return out;
    std::vector<cpu::BandMember> m;
    engine->band(thr, m);
    for (const auto& b : m) out.push_back({b.index, b.m});
    return out;
  }
  double exact_min(const void* raw_y, const int64_t* rows_, int64_t count) override {
    if (count == 0) return std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < count; ++j)
      SVP_CHECK_ARG(rows_[j] >= 0 && rows_[j] < X.rows, "local_rows[%lld] = %lld is out of range",
                    (long long)j, (long long)rows_[j]);
    std::vector<double> y(static_cast<size_t>(X.cols));
    src.center64(cpu::CenterRef{-1, static_cast<const char*>(raw_y)}, y.data());
    return cpu::exact_min_all(X, *k, src.norm64, y.data(), rows_, count, threads);
  }
  int64_t evals() const override { return engine ? engine->distance_evals() : 0; }
};

}  // namespace

KCenterShard::KCenterShard(const MatrixView& X, const ShardOptions& opt) {
  const char* name = opt.arg_name ? opt.arg_name : "embeddings";
  SVP_CHECK_ARG(X.rows >= 0 && X.cols >= 1, "%s must be a 2-D array with D >= 1, got shape (%lld, %lld)",
                name, (long long)X.rows, (long long)X.cols);
  const cpu::KernelTable& k = cpu::kernels_or_throw(opt.simd);
  std::vector<double> norms;
  if (X.rows > 0) {
    if (opt.metric == Metric::cosine) norms.resize(static_cast<size_t>(X.rows));
    cpu::MatrixFacts f = cpu::inspect(X, k, threads_of(opt.num_threads),
                                      norms.empty() ? nullptr : norms.data());
    cpu::check_facts(f, X, opt.metric, name);
    if (opt.method == KCenterMethod::pruned)
      SVP_CHECK_ARG(opt.cells.cell_of && opt.cells.n_cells >= 1, "the pruned method needs cells");
  }
  SVP_CHECK_ARG(opt.float64 || X.dtype != DType::f64,
                "float64 input needs float64 arithmetic (float64=True)");
  if (opt.float64)
    impl_.reset(new ShardImpl<double>(X, opt, k, std::move(norms)));
  else
    impl_.reset(new ShardImpl<float>(X, opt, k, std::move(norms)));
}

KCenterShard::~KCenterShard() = default;
int64_t KCenterShard::rows() const { return impl_->rows; }
void KCenterShard::exclude(int64_t r) { impl_->exclude(r); }
void KCenterShard::add_center(const void* raw, int64_t r) { impl_->add_center(raw, r); }
void KCenterShard::top2(ShardCandidate* a, ShardCandidate* b) { impl_->top2(a, b); }
double KCenterShard::error_bound(double v) const { return impl_->error_bound(v); }
double KCenterShard::exact_tolerance(double v) const { return impl_->exact_tolerance(v); }
std::vector<ShardBandMember> KCenterShard::band(double thr) { return impl_->band(thr); }
double KCenterShard::exact_min(const void* raw_y, const int64_t* rows, int64_t count) {
  return impl_->exact_min(raw_y, rows, count);
}
int64_t KCenterShard::distance_evals() const { return impl_->evals(); }

}  // namespace svp
