// The AVX512_BF16 family's widening of q4 weights to bf16 (the values the AMX tiles multiply:
// bf16 of (q - zero) x scale), for products with many tokens per weight: cpu_linear.cc widens a
// few rows at a time and multiplies them with gemm_bf16_xbf16. The exact kernel (gemm_q4_xbf16)
// folds each row's group sums into its totals once per group and token; with many tokens those
// folds, not the products, bound it, while a widening read once serves every token. (fp8 needs
// no widening here: its block scales go onto the activations, kernels_avx512_bf16.cc.)
// Nothing here runs unless CpuSupports(CpuIsa::kAvx512Bf16).
#include "kernels/cpu/kernels_avx512_bf16_widen.h"

#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/q4_bf16.h"

namespace expertmesh::kernels::cpu {

// Row by row through the (row, group) tables of q4_bf16.h, prefetching row r of `next` (the
// rows after these; nullptr: none) into the L2 while row r is widened.
void WidenQ4Bf16(const uint8_t* w, int64_t ldw, int64_t rows, int64_t k, const Q4Groups& groups,
                 const uint8_t* next, uint16_t* out) {
  const int64_t group = groups.Group(0);
  for (int64_t r = 0; r < rows; ++r) {
    if (next != nullptr) {
      for (int64_t i = 0; i < k / 2; i += 64) __builtin_prefetch(next + r * ldw + i, 0, 1);
    }
    WidenQ4Row(w + r * ldw, k, 0, k, groups, group, r, out + r * k);
  }
}

}  // namespace expertmesh::kernels::cpu
