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
// bf16((q - zero) * scale), and a unit of 32 values becomes 32 bf16 weights in a load and three
// instructions: the unit's 16 bytes, broadcast to both halves, zero-extended to 16-bit words;
// shifted right by 0 in the low half and by 4 in the high half; looked up in the table
// (VPERMW reads an index's low 5 bits, so the low half's index is its low nibble plus 16 times
// bit 4: the table holds its 16 entries twice). Then the weights multiply as bf16 weights do.
inline __m512i Q4Table(float scale, float zero) {
  const __m512 q = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 w = _mm512_mul_ps(_mm512_sub_ps(q, _mm512_set1_ps(zero)), _mm512_set1_ps(scale));
  const __m256i half = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(w));
  return _mm512_broadcast_i64x4(half);
}

inline __m512i Q4Shifts() {
  return _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
}

inline __m512i LoadQ4AsBf16(const uint8_t* unit, __m512i table, __m512i shifts) {
  const __m256i bytes =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(unit)));
  const __m512i index = _mm512_srlv_epi16(_mm512_cvtepu8_epi16(bytes), shifts);
  return _mm512_permutexvar_epi16(index, table);
}

inline float ZeroOf(const Q4Groups& groups, int64_t at) {
  return groups.zero_points == nullptr ? static_cast<float>(kQ4SymmetricZero)
                                       : groups.zero_points[at];
}

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_Q4_BF16_H_
