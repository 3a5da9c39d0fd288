// The CPU kernels' layout of 4-bit weights (DType::kQ4). Each row holds its values in units of
// 32 (rows have a multiple of 32 values): byte j (0..15) of unit u holds value 32u + j in its
// low nibble and value 32u + 16 + j in its high nibble. One 16-byte load then gives a unit's
// values in order as two halves (low nibbles, then high nibbles), which the AVX-512 kernels
// widen to 32 bf16 with a shift and a table lookup; checkpoint packings (eight values per int32,
// along rows or, in GPTQ, down columns) would need a shuffle per load instead.
#ifndef EXPERTMESH_KERNELS_Q4_LAYOUT_H_
#define EXPERTMESH_KERNELS_Q4_LAYOUT_H_

#include <cstdint>

namespace expertmesh::kernels {

inline constexpr int64_t kQ4Unit = 32;
// The zero point of symmetric int4 as stored here (signed values -8..7 plus 8).
inline constexpr int kQ4SymmetricZero = 8;

// Value i (0..15) of a packed row.
inline uint8_t Q4Value(const uint8_t* row, int64_t i) {
  const int64_t j = i % kQ4Unit;
  const uint8_t byte = row[(i - j) / 2 + (j & 15)];
  return j < 16 ? byte & 0x0f : byte >> 4;
}

// Packs k values (each 0..15; k a multiple of 32) into k / 2 bytes.
inline void PackQ4Row(const uint8_t* values, int64_t k, uint8_t* packed) {
  for (int64_t u = 0; u < k; u += kQ4Unit) {
    for (int64_t j = 0; j < 16; ++j) {
      packed[u / 2 + j] =
          static_cast<uint8_t>((values[u + j] & 0x0f) | (values[u + 16 + j] & 0x0f) << 4);
    }
  }
}

}  // namespace expertmesh::kernels

#endif  // EXPERTMESH_KERNELS_Q4_LAYOUT_H_
