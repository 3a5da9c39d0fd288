// Helpers shared by the AVX-512 kernel files (each compiled with -mavx512f; include nowhere
// else).
#ifndef EXPERTMESH_KERNELS_CPU_AVX512_SUM_H_
#define EXPERTMESH_KERNELS_CPU_AVX512_SUM_H_

#include <immintrin.h>

#include <cmath>
#include <cstdint>
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

// Avx512HorizontalSum of a, b, c and d into out[0..3], in the same tree (the same bits): the
// halves of two vectors added in one 512-bit add, then the quarters of four, then the pairs
// within each quarter, 14 instructions where four separate sums take 28.
inline void Avx512HorizontalSum4(__m512 a, __m512 b, __m512 c, __m512 d, float* out) {
  // [a 0-3 + 8-11, a 4-7 + 12-15, b ..., b ...]: each vector's h of Avx512HorizontalSum.
  const __m512 ab =
      _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  const __m512 cd =
      _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
  // [q of a, q of b, q of c, q of d]: the low quarter of each h plus its high quarter.
  const __m512 q =
      _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
  // Lane 0 of each quarter: (q0 + q2) + (q1 + q3).
  const __m512 t = _mm512_add_ps(q, _mm512_shuffle_ps(q, q, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m512 s = _mm512_add_ps(t, _mm512_shuffle_ps(t, t, _MM_SHUFFLE(2, 3, 0, 1)));
  const __m512i lane0s = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  _mm_storeu_ps(out, _mm512_castps512_ps128(_mm512_permutexvar_ps(lane0s, s)));
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

// total(t) + part[t] x (scale x unbias) into set_total(t, ...) for t < T, each as AddScaledPart
// computes it, with the overflow test made once for all T (a block-scaled kernel's fold of one
// row's segment sums for its tokens). total(t) -> __m512 and set_total(t, __m512) reach the
// totals wherever the kernel keeps them (registers or memory). Always inlined: called out of
// line, the kernels' segment sums went through the stack (fp8 at 8 tokens ran at 60 GFLOP/s on
// one Zen 4 core instead of 93).
template <int T, typename Total, typename SetTotal>
__attribute__((always_inline)) inline void AddScaledParts(const __m512 (&part)[T], float scale,
                                                          float unbias, const Total& total,
                                                          const SetTotal& set_total) {
  const float folded = scale * unbias;
  if (std::fabs(folded) <= std::numeric_limits<float>::max()) {
    const __m512 factor = _mm512_set1_ps(folded);
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) set_total(t, _mm512_fmadd_ps(part[t], factor, total(t)));
  } else {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) set_total(t, AddScaledPart(total(t), part[t], scale, unbias));
  }
}

// 16 bf16 values (raw bits) as fp32: each widened exactly by a 16-bit shift.
inline __m512 LoadBf16AsF32(const uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_AVX512_SUM_H_
