// The CPU kernels for one instruction set; see kernels_impl.h.
#define SVP_ISA_GENERIC 1
#define SVP_ISA_NS isa_generic
#include "kernels_impl.h"

namespace svp {
namespace cpu {

const KernelTable* table_generic() {
  static const KernelTable table = {
      "generic",
      &isa_generic::d2_rows<isa_generic::F>,
      &isa_generic::d2_rows<isa_generic::D>,
      &isa_generic::row_facts,
      &isa_generic::nonfinite_col,
      &isa_generic::score_rows,
      &isa_generic::refresh_tile,
      &isa_generic::annulus,
      &isa_generic::max2,
      &isa_generic::exact_rows,
      &isa_generic::unc_function,
      &isa_generic::dot_block<isa_generic::F>,
      &isa_generic::dot_block<isa_generic::D>,
      &isa_generic::center_vec<float>,
      &isa_generic::center_vec<double>,
  };
  return &table;
}

}  // namespace cpu
}  // namespace svp
