// Helpers shared by the AVX-512 kernel files (each compiled with -mavx512f; include nowhere
// else).
#ifndef EXPERTMESH_KERNELS_CPU_AVX512_SUM_H_
#define EXPERTMESH_KERNELS_CPU_AVX512_SUM_H_

#include <immintrin.h>

#include <cmath>
#include <limits>

namespace expertmesh::kernels::cpu {

// 16 lanes summed as a fixed tree (halves, then quarters ...): deterministic.
inline float Avx512HorizontalSum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 t = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// acc + part x (scale x unbias), for a block-scaled kernel's partial sum (`part`) that comes out
// `unbias` (a power of two) too small: the two factors fold into one, exact, while that stays
// finite; where it overflows, part is multiplied by unbias first and then by the scale.
inline __m512 AddScaledPart(__m512 acc, __m512 part, float scale, float unbias) {
  const float folded = scale * unbias;
  if (std::fabs(folded) <= std::numeric_limits<float>::max()) {
    return _mm512_fmadd_ps(part, _mm512_set1_ps(folded), acc);
  }
  return _mm512_fmadd_ps(_mm512_mul_ps(part, _mm512_set1_ps(unbias)), _mm512_set1_ps(scale), acc);
}

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_AVX512_SUM_H_
