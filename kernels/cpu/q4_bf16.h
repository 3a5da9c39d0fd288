// q4 weights widened to bf16 on AVX512_BF16 + AVX512BW, shared by the VDPBF16PS kernels
// (kernels_avx512_bf16.cc) and the AMX ones (kernels_amx_fp8.cc). Include only from files
// compiled with those flags.
#ifndef EXPERTMESH_KERNELS_CPU_Q4_BF16_H_
#define EXPERTMESH_KERNELS_CPU_Q4_BF16_H_

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/kernel_table.h"
#include "kernels/q4_layout.h"

namespace expertmesh::kernels::cpu {

// q4 weights x bf16 activations. Each (row, group) gets a table of its 16 possible weights,
// bf16((q - zero) * scale), held twice (entries 16..31 repeat 0..15: VPERMW reads an index's
// low 5 bits). A 32-value chunk of a 64-wide unit (kernels/q4_layout.h) becomes 32 bf16 weights
// in a load and two or three instructions: the unit's 32 bytes zero-extended to 16-bit words;
// shifted right by 4 for the unit's second half; looked up in the table (for the first half the
// index is the low nibble plus 16 times bit 4, which the repeated table ignores). A last unit
// 32 wide has 16 bytes: broadcast to both halves of the words and shifted by 0 and 4.
inline __m512i Q4Table(float scale, float zero) {
  const __m512 q = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 w = _mm512_mul_ps(_mm512_sub_ps(q, _mm512_set1_ps(zero)), _mm512_set1_ps(scale));
  // Both halves at once: VCVTNE2PS2BF16 packs its two sources (here the same) side by side.
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(w, w));
}
// The table of a symmetric group (zero point 8): one multiply and the conversion, the cost that
// batch-1 decode pays per row and group.
inline __m512i Q4SymmetricTable(float scale) {
  const __m512 centered = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512 w = _mm512_mul_ps(centered, _mm512_set1_ps(scale));
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(w, w));
}

// The 64 values of a 64-wide unit as 16-bit words: the unit's bytes zero-extended. The first
// half's weights are LookUpQ4(words, table), the second half's LookUpQ4(ShiftQ4(words), table).
inline __m512i LoadQ4Words(const uint8_t* unit) {
  return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit)));
}
inline __m512i ShiftQ4(__m512i words) { return _mm512_srli_epi16(words, 4); }
inline __m512i LookUpQ4(__m512i words, __m512i table) {
  return _mm512_permutexvar_epi16(words, table);
}
// The 32 values of a last unit 32 wide as bf16 weights.
inline __m512i LoadQ4TailAsBf16(const uint8_t* unit, __m512i table) {
  const __m256i bytes =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(unit)));
  const __m512i shifts = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  return LookUpQ4(_mm512_srlv_epi16(_mm512_cvtepu8_epi16(bytes), shifts), table);
}

// Follows the groups of one row along k, 32 values at a time, without a division per step:
// At(i) says whether value i starts a new group (then table() is that group's).
class Q4GroupCursor {
 public:
  // Starts row `row` at group `group` (groups.Group of the first value, which callers compute
  // once for all rows).
  void Start(const Q4Groups& groups, int64_t row, int64_t group) {
    groups_ = &groups;
    base_ = groups.Row(row);
    group_ = group;
    end_ = (group + 1) * groups.block_cols - groups.col_offset;
    Build();
  }
  // REQUIRES: i ascends in steps of 32 (a group is 32 or more values).
  void At(int64_t i) {
    if (i < end_) return;
    ++group_;
    end_ += groups_->block_cols;
    Build();
  }
  __m512i table() const { return table_; }

 private:
  void Build() {
    table_ = groups_->zero_points == nullptr
                 ? Q4SymmetricTable(groups_->scales[base_ + group_])
                 : Q4Table(groups_->scales[base_ + group_], groups_->zero_points[base_ + group_]);
  }
  const Q4Groups* groups_ = nullptr;
  int64_t base_ = 0, group_ = 0, end_ = 0;
  __m512i table_;
};

// Values [k0, k1) (multiples of 32) of row r of a q4 weight of k values per row, as the bf16
// weights the VDPBF16PS and AMX kernels multiply, into out[k0..k1). `group` is groups.Group(k0).
inline void WidenQ4Row(const uint8_t* row, int64_t k, int64_t k0, int64_t k1,
                       const Q4Groups& groups, int64_t group, int64_t r, uint16_t* out) {
  const int64_t whole = k & ~int64_t{63};
  Q4GroupCursor cursor;
  cursor.Start(groups, r, group);
  int64_t i = k0;
  if (i % 64 != 0 && i < whole) {  // starts in the second half of a unit
    const __m512i words = ShiftQ4(LoadQ4Words(row + (i - 32) / 2));
    _mm512_storeu_si512(out + i, LookUpQ4(words, cursor.table()));
    i += 32;
  }
  for (; i + 64 <= std::min(k1, whole); i += 64) {
    const __m512i words = LoadQ4Words(row + i / 2);
    cursor.At(i);
    _mm512_storeu_si512(out + i, LookUpQ4(words, cursor.table()));
    cursor.At(i + 32);
    _mm512_storeu_si512(out + i + 32, LookUpQ4(ShiftQ4(words), cursor.table()));
  }
  if (i < k1 && i < whole) {  // ends in the first half of a unit
    cursor.At(i);
    _mm512_storeu_si512(out + i, LookUpQ4(LoadQ4Words(row + i / 2), cursor.table()));
    i += 32;
  }
  if (i < k1) {  // the last unit, 32 wide
    cursor.At(i);
    _mm512_storeu_si512(out + i, LoadQ4TailAsBf16(row + i / 2, cursor.table()));
  }
}

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_Q4_BF16_H_
