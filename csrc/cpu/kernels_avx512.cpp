// The CPU kernels for one instruction set; see kernels_impl.h.
#define SVP_ISA_AVX512 1
#define SVP_ISA_NS isa_avx512
#include "kernels_impl.h"

namespace svp {
namespace cpu {

const KernelTable* table_avx512() {
  static const KernelTable table = {
      "avx512",
      &isa_avx512::d2_rows<isa_avx512::F>,
      &isa_avx512::d2_rows<isa_avx512::D>,
      &isa_avx512::row_facts,
      &isa_avx512::nonfinite_col,
      &isa_avx512::score_rows,
      &isa_avx512::refresh_tile,
      &isa_avx512::annulus,
      &isa_avx512::max2,
      &isa_avx512::exact_rows,
      &isa_avx512::unc_function,
      &isa_avx512::dot_block<isa_avx512::F>,
      &isa_avx512::dot_block<isa_avx512::D>,
      &isa_avx512::center_vec<float>,
      &isa_avx512::center_vec<double>,
  };
  return &table;
}

}  // namespace cpu
}  // namespace svp
