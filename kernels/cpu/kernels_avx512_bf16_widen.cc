// The AVX512_BF16 family's widening of fp8 and q4 weights to bf16 (the values the AMX tiles
// multiply: bf16 of value x scale), for products with many tokens per weight: cpu_linear.cc
// widens a few rows at a time and multiplies them with gemm_bf16_xbf16. The exact kernels
// (gemm_f8_xbf16, gemm_q4_xbf16) fold each row's 128-wide block sums (or 32-wide group sums)
// into its totals once per block and token; with many tokens those folds, not the products,
// bound them (fp8 at 32 tokens: 0.66x the bf16 kernel's GFLOP/s on a Zen 4 core), while a
// widening read once serves every token.
// This file alone is compiled with -mavx512vbmi (the fp8 byte table of fp8_bf16.h); nothing here
// runs unless CpuSupports(CpuIsa::kAvx512Bf16), which requires AVX512_VBMI.
#include "kernels/cpu/kernels_avx512_bf16_widen.h"

#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/fp8_bf16.h"
#include "kernels/cpu/q4_bf16.h"

namespace expertmesh::kernels::cpu {

// Blocks of up to kWidenMaxRows rows, each 128 columns at a time across its rows (so that one
// byte table serves every row of a scale block: fp8_bf16.h), prefetching the same bytes of the
// next block (or of `next` after the last one) into the L2: the 32 rows side by side are more
// streams than the hardware prefetcher follows.
void WidenF8Bf16(const uint8_t* w, int64_t ldw, int64_t rows, int64_t k, const Fp8Scales& scales,
                 const uint8_t* next, uint16_t* out) {
  WidenTable table;
  for (int64_t r = 0; r < rows; r += kWidenMaxRows) {
    const int rows_here = static_cast<int>(std::min<int64_t>(kWidenMaxRows, rows - r));
    const uint8_t* ahead = r + kWidenMaxRows < rows ? w + (r + kWidenMaxRows) * ldw : next;
    for (int64_t k0 = 0; k0 < k; k0 += kWidenMaxCols) {
      WidenColumns(w + r * ldw, ldw, rows_here, k0, std::min(k, k0 + kWidenMaxCols), k, scales, r,
                   k, out + r * k, ahead, table);
    }
  }
}

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
