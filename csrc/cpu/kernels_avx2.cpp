// The CPU kernels for one instruction set; see kernels_impl.h.
#define SVP_ISA_AVX2 1
#define SVP_ISA_NS isa_avx2
#include "kernels_impl.h"

namespace svp {
namespace cpu {

const KernelTable* table_avx2() {
  static const KernelTable table = {
      "avx2",
      &isa_avx2::d2_rows<isa_avx2::F>,
      &isa_avx2::d2_rows<isa_avx2::D>,
      &isa_avx2::row_facts,
      &isa_avx2::nonfinite_col,
      &isa_avx2::score_rows,
      &isa_avx2::refresh_tile,
      &isa_avx2::annulus,
      &isa_avx2::max2,
      &isa_avx2::exact_rows,
      &isa_avx2::unc_function,
      &isa_avx2::dot_block<isa_avx2::F>,
      &isa_avx2::dot_block<isa_avx2::D>,
      &isa_avx2::center_vec<float>,
      &isa_avx2::center_vec<double>,
  };
  return &table;
}

}  // namespace cpu
}  // namespace svp
