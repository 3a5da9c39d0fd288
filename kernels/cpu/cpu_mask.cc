#include "kernels/cpu/cpu_mask.h"

#include <algorithm>
#include <limits>

namespace expertmesh::kernels::cpu {

void MaskLogitsRow(std::span<const uint32_t> mask, std::span<float> row) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const size_t vocab = row.size();
  // A grammar's mask is mostly whole words of 0 (e.g. every token outside a JSON string) or of
  // ~0, so whole words are the fast path; mixed words go bit by bit.
  for (size_t w = 0, base = 0; base < vocab; ++w, base += 32) {
    const uint32_t bits = mask[w];
    if (bits == ~uint32_t{0}) continue;
    const size_t n = std::min<size_t>(32, vocab - base);
    float* out = row.data() + base;
    if (bits == 0) {
      std::fill(out, out + n, kNegInf);
      continue;
    }
    for (size_t b = 0; b < n; ++b) {
      if (((bits >> b) & 1u) == 0) out[b] = kNegInf;
    }
  }
}

}  // namespace expertmesh::kernels::cpu
