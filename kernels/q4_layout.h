// The CPU kernels' layout of 4-bit weights (DType::kQ4). A row has a multiple of 32 values
// (kQ4Unit: groups, slices and their offsets are multiples of it too). They go in units of 64,
// the last one 32 wide when the row length is an odd multiple of 32: in a unit of width W that
// starts at value c, byte j (j < W / 2) holds value c + j in its low nibble and value
// c + W / 2 + j in its high nibble. One 32-byte load then gives 64 values in order as two
// halves: zero-extended to 16-bit words, the low nibbles index a table directly (the table
// repeats its 16 entries at 16..31, so bit 4 does not matter) and the high ones after a shift
// by 4; checkpoint packings (eight values per int32, along rows or, in GPTQ, down columns) would
// need a shuffle per load instead.
#ifndef EXPERTMESH_KERNELS_Q4_LAYOUT_H_
#define EXPERTMESH_KERNELS_Q4_LAYOUT_H_

#include <cstdint>

namespace expertmesh::kernels {

// Rows, groups, slices and their offsets are multiples of this many values.
inline constexpr int64_t kQ4Unit = 32;
// The zero point of symmetric int4 as stored here (signed values -8..7 plus 8).
inline constexpr int kQ4SymmetricZero = 8;

// Where value i of a row of k values is: the unit's first byte relative to the row, and the
// unit's half width (32, or 16 for a last unit 32 wide).
struct Q4Position {
  int64_t unit_byte;
  int64_t half;
  int64_t offset;  // i's place in its unit
};
inline Q4Position Q4PositionOf(int64_t k, int64_t i) {
  const int64_t whole = k / 64 * 64;  // values in 64-wide units
  if (i < whole) return {i / 64 * 32, 32, i % 64};
  return {whole / 2, 16, i - whole};
}

// Value i (0..15) of a packed row of k values.
inline uint8_t Q4Value(const uint8_t* row, int64_t k, int64_t i) {
  const Q4Position p = Q4PositionOf(k, i);
  const uint8_t byte = row[p.unit_byte + p.offset % p.half];
  return p.offset < p.half ? byte & 0x0f : byte >> 4;
}

// Packs k values (each 0..15; k a multiple of 32) into k / 2 bytes.
inline void PackQ4Row(const uint8_t* values, int64_t k, uint8_t* packed) {
  for (int64_t c = 0; c < k;) {
    const int64_t half = k - c >= 64 ? 32 : 16;
    for (int64_t j = 0; j < half; ++j) {
      packed[c / 2 + j] =
          static_cast<uint8_t>((values[c + j] & 0x0f) | (values[c + half + j] & 0x0f) << 4);
    }
    c += 2 * half;
  }
}

}  // namespace expertmesh::kernels

#endif  // EXPERTMESH_KERNELS_Q4_LAYOUT_H_
