// The product screen: many centers applied to many rows as a blocked matrix
// product, with the engine's state left exactly as the fast kernel would leave it.
//
// Applying q centers to n rows costs n x q distances of D terms. In the
// difference form (x - c)^2 every row chunk needs a subtraction beside the
// multiply-add, and the kernels stream one center at a time; as dot products
// x . c the work is an (n x D) @ (D x q) product that a register-blocked
// kernel (kernels.h, DotBlockFn) runs near the machine's multiply-add rate.
// Dot products alone do not give the fast kernel's values, and the
// certification needs those (svp/exactness.h: |v - exact| <= E(v)): so the
// product only screens. For every (row, center) pair it yields a rigorous
// lower bound L on the exact distance; a pair whose L reaches the row's m2 +
// E(m2) cannot change the row's state (see below), and only the others get
// the fast kernel's distance, which then updates m, m2 and assign through
// take_center_distance as before. The state after a block is therefore
// bit for bit the state the plain engines reach, and so are the radii.
//
// Why a screened pair cannot change the state. Let v be the fast value of the
// pair, r its exact distance, r >= L >= m2 + E(m2). If v < m2 then E(v) <= E(m2)
// (E grows with v) and v >= r - E(v) >= m2 + E(m2) - E(m2) = m2: a
// contradiction. So v >= m2 >= m, and take_center_distance(v) changes
// nothing. (m2 only falls within a block, so the m2 the screen read before
// the block bounds the one the update would see.)
//
// The lower bound (u: Acc's unit roundoff, n = ceil(D / L) + 10 terms as in
// svp/exactness.h, gamma = 1.01 n u, u64 = 2^-53):
// - Euclidean: r = ||x||^2 + ||c||^2 - 2 x.c with c the center's Acc vector
//   (exact: the raw row widened). The kernel's t = x.c errs by at most
//   gamma ||x|| ||c|| (+ underflow, D+2 times Acc's tiny); the float64 norms
//   nx2, nc2 err by at most (D + 2) u64 of themselves, and so does the
//   float64 combination nx2 + nc2 - 2t of its terms' magnitudes.
// - Cosine: r = 2 - 2 x^.c^ with unit rows. The center's Acc vector c~ is
//   c^ rounded (relative error rho = u + (D/2 + 3) u64 per element), so
//   |t - x.c^| <= ||x|| (gamma (1 + rho) + rho); divided by ||x|| (float64,
//   relative error (D/2 + 2) u64) the cosine errs by at most
//   kappa = gamma (1 + rho) + rho + (D/2 + 4) u64 (+ underflow / ||x||).
// Every term is doubled for margin, as in the fast model.
#pragma once

#include <cstdint>
#include <vector>

#include "engine.h"
#include "svp/kcenter.h"

namespace svp {
namespace cpu {

// The thresholds of the product path: svp::ProductTuning (svp/kcenter.h).
using svp::ProductTuning;
using svp::product_tuning;

template <typename Acc>
class ProductScreen {
 public:
  // What one thread needs between calls.
  struct Scratch {
    std::vector<Acc> dots, hit_val, hit_scale;
    std::vector<int32_t> pairs, sorted_rows;
    std::vector<int64_t> hit_count, hit_start, pos;
    std::vector<const char*> hit_ptr;
    std::vector<uint8_t> flags;
  };

  // src: the engine's rows; threads for the one pass over the row norms.
  ProductScreen(const RowSource<Acc>& src, int threads);

  // Should q centers go through the product for these rows?
  bool worth(int64_t q) const;

  // The rows' facts (Euclidean: float64 squared norms; cosine: the norms come
  // with the source). One pass over the rows, the first time it is called.
  void prepare();

  // Facts of nc centers (what apply needs): cf[2c], cf[2c+1]. From the raw
  // rows (the Acc vectors of Euclidean centers are the raw values widened,
  // exactly; cosine needs none). Call prepare() first.
  void center_facts(const CenterRef* centers, int64_t nc, double* cf) const;

  // Apply centers cvec[0..nc) (working space, stride ldc, facts cf, ordinals
  // ords ascending) to rows ids[0..nr) (rows[r] its raw row, scale[r] its
  // 1/||x|| for cosine or null), whose state m, m2, assign is indexed by r.
  // Pairs with ords[c] < first[r] (first may be null) are skipped: the row
  // has that center already. Excluded rows (m < 0) are left alone. err: a
  // bound of the fast kernel's error (the engine's fast or band model).
  // Returns how many fast distances it computed.
  int64_t apply(const int64_t* ids, const char* const* rows, const Acc* scale, int64_t nr,
                const Acc* cvec, int64_t ldc, const double* cf, int64_t nc, const int64_t* ords,
                const int64_t* first, Acc* m, Acc* m2, int64_t* assign, Scratch& s) const;

  const ErrorModel& fast_model() const { return fast_; }

 private:
  RowSource<Acc> src_;
  int threads_;
  bool cosine_;
  ErrorModel fast_;
  double k_dot_ = 0;    // Euclidean: t's error per unit of ||x|| ||c||, twice, doubled
  double k_norm_ = 0;   // float64 error per unit of magnitude, doubled
  double k_tiny_ = 0;   // underflow of the dot products, twice, doubled
  double k_cos_ = 0;    // cosine: the bound on |d - r| besides underflow
  std::vector<double> nx2_, nxu_;  // Euclidean: ||x||^2 (float64) and an upper bound of ||x||
};

}  // namespace cpu
}  // namespace svp
