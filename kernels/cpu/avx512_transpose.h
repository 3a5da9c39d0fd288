// A 16 x 16 transpose of 32-bit lanes in AVX-512F registers, shared by attention's key
// transpositions (attention_avx512.cc: fp32 columns; attention_avx512_bf16.cc: bf16 pairs).
// Include only from files compiled with -mavx512f.
#ifndef EXPERTMESH_KERNELS_CPU_AVX512_TRANSPOSE_H_
#define EXPERTMESH_KERNELS_CPU_AVX512_TRANSPOSE_H_

#include <immintrin.h>

namespace expertmesh::kernels::cpu {

// v[i] (row i of a 16 x 16 block) becomes column i: v[i][j] <- v[j][i].
inline void Transpose16x16(__m512 (&v)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {  // pairs of rows interleaved within 128-bit lanes
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  // u[4 g + c]: in 128-bit lane L, element 4 L + c of rows 4 g .. 4 g + 3.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // A 4 x 4 transpose of 128-bit lanes among u[c], u[4 + c], u[8 + c], u[12 + c].
  for (int c = 0; c < 4; ++c) {
    const __m512 lo_ab = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
    const __m512 hi_ab = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xee);
    const __m512 lo_cd = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 hi_cd = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xee);
    v[c] = _mm512_shuffle_f32x4(lo_ab, lo_cd, 0x88);
    v[4 + c] = _mm512_shuffle_f32x4(lo_ab, lo_cd, 0xdd);
    v[8 + c] = _mm512_shuffle_f32x4(hi_ab, hi_cd, 0x88);
    v[12 + c] = _mm512_shuffle_f32x4(hi_ab, hi_cd, 0xdd);
  }
}

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_AVX512_TRANSPOSE_H_
