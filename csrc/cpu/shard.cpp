#include "svp/shard.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>
#include <vector>

#include "batch_pass.h"
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
  virtual int64_t offer(int64_t, int64_t, void*) = 0;
  virtual void add_centers(const void*, const int64_t*, int64_t) = 0;
  int64_t rows = 0;
};

struct KCenterDecider::Impl {
  virtual ~Impl() = default;
  virtual void add_centers(const void*, int64_t) = 0;
  virtual int64_t centers() const = 0;
  virtual PassDecision decide_pass(const void*, int64_t, int64_t, int64_t, int64_t, int64_t*,
                                   int64_t*, double*) = 0;
  virtual int64_t ambiguous() const = 0;
  virtual int64_t exact_evals() const = 0;
  virtual int64_t cand_evals() const = 0;
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

  int64_t offer(int64_t T, int64_t global_offset, void* message) override {
    SVP_CHECK_ARG(T >= 1, "the batched protocol needs T >= 1 candidates per rank, got %lld",
                  (long long)T);
    const int64_t rb = X.cols * static_cast<int64_t>(dtype_size(X.dtype));
    const OfferLayout L{T, rb};
    char* out = static_cast<char*>(message);
    std::memset(out, 0, static_cast<size_t>(L.bytes()));
    std::vector<cpu::BandMember> cand;
    double bound = -1;
    if (engine) bound = engine->top_candidates(T, cand);
    const int64_t count = static_cast<int64_t>(cand.size());
    std::memcpy(out, &count, 8);
    std::memcpy(out + 8, &bound, 8);
    for (int64_t j = 0; j < T; ++j) {
      double rec_v = -1, rec_m2 = -1;
      int64_t rec_assign = -1, rec_index = -1;
      if (j < count) {
        const cpu::BandMember& c = cand[static_cast<size_t>(j)];
        rec_v = c.m;
        rec_m2 = c.m2;
        rec_assign = c.assign;
        rec_index = global_offset + c.index;
        std::memcpy(out + L.row_offset(j), X.row(c.index), static_cast<size_t>(rb));
      }
      char* rec = out + 16 + 32 * j;
      std::memcpy(rec, &rec_v, 8);
      std::memcpy(rec + 8, &rec_m2, 8);
      std::memcpy(rec + 16, &rec_assign, 8);
      std::memcpy(rec + 24, &rec_index, 8);
    }
    return count;
  }

  void add_centers(const void* rows_raw, const int64_t* local_rows, int64_t q) override {
    SVP_CHECK_ARG(q >= 0, "add_centers needs q >= 0 centers, got %lld", (long long)q);
    for (int64_t j = 0; j < q; ++j)
      SVP_CHECK_ARG(local_rows[j] >= -1 && local_rows[j] < X.rows,
                    "local_rows[%lld] must be -1 or in [0, %lld), got %lld", (long long)j,
                    (long long)X.rows, (long long)local_rows[j]);
    const int64_t first = ordinal;
    ordinal += q;
    if (!engine || q == 0) return;
    const int64_t rb = X.cols * static_cast<int64_t>(dtype_size(X.dtype));
    std::vector<cpu::CenterRef> refs(static_cast<size_t>(q));
    std::vector<int64_t> ords(static_cast<size_t>(q));
    for (int64_t j = 0; j < q; ++j) {
      const int64_t r = local_rows[j];
      if (r >= 0) engine->exclude(r);
      refs[j] = r >= 0 ? cpu::CenterRef{r, X.row(r)}
                       : cpu::CenterRef{-1, static_cast<const char*>(rows_raw) + j * rb};
      ords[j] = first + j;
    }
    engine->add_centers(refs.data(), ords.data(), q);
  }
};

// The deciding rank's state (KCenterDecider): every center's raw row, and
// one pass's candidates, gathered from every rank's offer.
template <typename Acc>
struct DeciderImpl final : KCenterDecider::Impl, cpu::PassHost<Acc> {
  int64_t D, rb;
  DType dtype;
  bool cosine;
  const cpu::KernelTable* k;
  int threads;
  cpu::ErrorModel tie, err;  // (in this order: err is built on tie)
  std::vector<char> store;        // [K x rb] the centers' raw rows, by ordinal
  std::vector<double> store_norm;  // [K] their float64 norms (cosine)
  std::vector<int64_t> iota;       // 0 .. K-1
  int64_t K = 0;
  KCenterStats st;
  // Rows given by address (CenterRef row -1) in X's dtype; norm64 is only a
  // marker of the cosine metric here: such rows get their norm from
  // row_facts, in the arithmetic their owners used for theirs.
  double cosine_marker = 1.0;
  cpu::RowSource<Acc> src;
  cpu::PassAcceptor<Acc> acceptor;
  // this pass
  std::vector<cpu::BandMember> cand;
  std::vector<const char*> cand_rows;
  std::vector<Acc> cand_scale;
  std::vector<int64_t> cand_slot;
  std::unordered_map<int64_t, size_t> pos_of;
  int64_t* out_picks = nullptr;
  int64_t* out_slots = nullptr;
  double* out_radii = nullptr;
  int64_t taken = 0;

  DeciderImpl(int64_t D_, DType dtype_, const ShardOptions& opt, const cpu::KernelTable& k_,
              int64_t capacity)
      : D(D_),
        rb(D_ * static_cast<int64_t>(dtype_size(dtype_))),
        dtype(dtype_),
        cosine(opt.metric == Metric::cosine),
        k(&k_),
        threads(threads_of(opt.num_threads)),
        tie(svp::exact_tie_model(opt.metric, D_)),
        err(svp::band_model(svp::error_model(std::is_same<Acc, double>::value, opt.metric, D_), tie)),
        acceptor(dtype_, D_, fast_d2(k_), err, tie) {
    src.X.cols = D;
    src.X.dtype = dtype;
    src.k = k;
    src.norm64 = cosine ? &cosine_marker : nullptr;
    const int64_t cap = std::max<int64_t>(0, std::min<int64_t>(capacity, (int64_t{1} << 30) / std::max<int64_t>(rb, 1)));
    store.reserve(static_cast<size_t>(cap * rb));
  }

  static cpu::D2RowsFn<Acc> fast_d2(const cpu::KernelTable& kt) {
    cpu::RowSource<Acc> s;
    s.k = &kt;
    return s.d2();
  }

  MatrixView store_view() const {
    MatrixView v;
    v.data = store.data();
    v.rows = K;
    v.cols = D;
    v.row_stride = D;
    v.dtype = dtype;
    return v;
  }
  const double* store_norms() const { return cosine ? store_norm.data() : nullptr; }

  void add_centers(const void* rows_raw, int64_t q) override {
    const char* r = static_cast<const char*>(rows_raw);
    store.insert(store.end(), r, r + q * rb);
    for (int64_t j = 0; j < q; ++j) {
      if (cosine) {
        cpu::RowFacts f;
        k->row_facts(dtype, r + j * rb, D, &f);
        store_norm.push_back(std::sqrt(f.sumsq));
      }
      iota.push_back(K++);
    }
  }
  int64_t centers() const override { return K; }

  // ExactOracle: points are this pass's candidates, by global index
  void point64(int64_t index, double* out) override {
    src.center64(cpu::CenterRef{-1, cand_rows[pos_of.at(index)]}, out);
  }
  double center_d2(const double* y, int64_t ordinal) override {
    SVP_ASSERT(ordinal >= 0 && ordinal < K);
    double out;
    cpu::exact_d2_rows(store_view(), *k, store_norms(), &ordinal, 1, y, &out);
    return out;
  }
  double min_over_centers(const double* y, double, int64_t* evals) override {
    *evals += K;
    return cpu::exact_min_all(store_view(), *k, store_norms(), y, iota.data(), K, threads);
  }
  // PassHost
  void pick_vector(size_t pos, Acc* out) override {
    src.center(cpu::CenterRef{-1, cand_rows[pos]}, out);
  }
  void take_pick(int64_t index, double radius) override {
    const size_t pos = pos_of.at(index);
    out_picks[taken] = index;
    out_slots[taken] = cand_slot[pos];
    out_radii[taken] = radius;
    ++taken;
    add_centers(cand_rows[pos], 1);
  }

  PassDecision decide_pass(const void* offers, int64_t world, int64_t T, int64_t remaining,
                           int64_t cap, int64_t* picks, int64_t* slots, double* radii) override {
    SVP_CHECK_ARG(T >= 1 && world >= 1 && remaining >= 1 && cap >= 1,
                  "decide_pass needs T, world, remaining and cap >= 1, got %lld, %lld, %lld, %lld",
                  (long long)T, (long long)world, (long long)remaining, (long long)cap);
    const OfferLayout L{T, rb};
    struct Entry {
      double v;
      int64_t g;
      int64_t slot;
    };
    std::vector<Entry> all;
    double B = -1;
    const char* base = static_cast<const char*>(offers);
    for (int64_t r = 0; r < world; ++r) {
      const char* msg = base + r * L.bytes();
      int64_t count;
      double bound;
      std::memcpy(&count, msg, 8);
      std::memcpy(&bound, msg + 8, 8);
      SVP_ASSERT(count >= 0 && count <= T);
      B = std::max(B, bound);
      for (int64_t j = 0; j < count; ++j) {
        Entry e;
        std::memcpy(&e.v, msg + 16 + 32 * j, 8);
        std::memcpy(&e.g, msg + 16 + 32 * j + 24, 8);
        e.slot = r * T + j;
        all.push_back(e);
      }
    }
    SVP_CHECK_ARG(!all.empty(), "no candidate left on any rank");
    std::sort(all.begin(), all.end(),
              [](const Entry& a, const Entry& b) { return cpu::better(a.v, a.g, b.v, b.g); });
    if (static_cast<int64_t>(all.size()) > T) {
      B = std::max(B, all[static_cast<size_t>(T)].v);  // the best offered but not chosen
      all.resize(static_cast<size_t>(T));
    }
    cand.clear();
    cand_rows.clear();
    cand_scale.clear();
    cand_slot.clear();
    pos_of.clear();
    for (const Entry& e : all) {
      const char* msg = base + (e.slot / T) * L.bytes();
      const int64_t j = e.slot % T;
      const char* rec = msg + 16 + 32 * j;
      cpu::BandMember c;
      c.index = e.g;
      std::memcpy(&c.m, rec, 8);
      std::memcpy(&c.m2, rec + 8, 8);
      std::memcpy(&c.assign, rec + 16, 8);
      SVP_ASSERT(c.assign >= 0 && c.assign < K);
      pos_of[c.index] = cand.size();
      cand.push_back(c);
      cand_rows.push_back(msg + L.row_offset(j));
      cand_slot.push_back(e.slot);
      if (cosine) {
        cpu::RowFacts f;
        k->row_facts(dtype, cand_rows.back(), D, &f);
        cand_scale.push_back(static_cast<Acc>(1.0 / std::sqrt(f.sumsq)));
      }
    }
    out_picks = picks;
    out_slots = slots;
    out_radii = radii;
    taken = 0;
    PassDecision d;
    d.picks = acceptor.accept(cand, cand_rows.data(), cosine ? cand_scale.data() : nullptr, B,
                              remaining, cap, K, *this, &st);
    SVP_ASSERT(d.picks == taken);
    if (d.picks == 0) d.thr = cand[0].m - 2.0 * err.E(cand[0].m);
    return d;
  }
  int64_t ambiguous() const override { return st.ambiguous_steps; }
  int64_t exact_evals() const override { return st.exact_distance_evals; }
  int64_t cand_evals() const override { return st.candidate_evals; }
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
int64_t KCenterShard::offer(int64_t T, int64_t global_offset, void* message) {
  return impl_->offer(T, global_offset, message);
}
void KCenterShard::add_centers(const void* rows, const int64_t* local_rows, int64_t q) {
  impl_->add_centers(rows, local_rows, q);
}

KCenterDecider::KCenterDecider(int64_t D, DType dtype, const ShardOptions& opt, int64_t capacity) {
  SVP_CHECK_ARG(D >= 1, "the decider needs D >= 1 columns, got %lld", (long long)D);
  SVP_CHECK_ARG(opt.float64 || dtype != DType::f64,
                "float64 input needs float64 arithmetic (float64=True)");
  const cpu::KernelTable& k = cpu::kernels_or_throw(opt.simd);
  if (opt.float64)
    impl_.reset(new DeciderImpl<double>(D, dtype, opt, k, capacity));
  else
    impl_.reset(new DeciderImpl<float>(D, dtype, opt, k, capacity));
}
KCenterDecider::~KCenterDecider() = default;
void KCenterDecider::add_centers(const void* rows, int64_t q) { impl_->add_centers(rows, q); }
int64_t KCenterDecider::centers() const { return impl_->centers(); }
PassDecision KCenterDecider::decide_pass(const void* offers, int64_t world, int64_t T,
                                         int64_t remaining, int64_t cap, int64_t* picks,
                                         int64_t* slots, double* radii) {
  return impl_->decide_pass(offers, world, T, remaining, cap, picks, slots, radii);
}
int64_t KCenterDecider::ambiguous_steps() const { return impl_->ambiguous(); }
int64_t KCenterDecider::exact_distance_evals() const { return impl_->exact_evals(); }
int64_t KCenterDecider::candidate_evals() const { return impl_->cand_evals(); }

}  // namespace svp
