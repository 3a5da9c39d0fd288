// What attention's AVX-512 products share (attention_avx512.cc: fp32 FMAs;
// attention_avx512_bf16.cc: VDPBF16PS on bf16 pairs): the key transposition's 16 x 16 register
// transpose, lane masks and the dispatch on the vectors of 16 keys a block holds. Include only from
// files compiled with -mavx512f.
#ifndef EXPERTMESH_KERNELS_CPU_ATTENTION_AVX512_COMMON_H_
#define EXPERTMESH_KERNELS_CPU_ATTENTION_AVX512_COMMON_H_

#include <immintrin.h>

#include <cstdint>

namespace expertmesh::kernels::cpu {

inline __mmask16 FirstLanes(int64_t n) {
  return n >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << n) - 1);
}

// The accumulator tile of the scores: R query rows x V vectors of 16 keys, started at zero and
// stored into s (rows lds apart) for the first nk keys.
template <int R, int V>
inline void ZeroAccumulators(__m512 (&acc)[R][V]) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) acc[r][c] = _mm512_setzero_ps();
  }
}
template <int R, int V>
inline void StoreScores(const __m512 (&acc)[R][V], int64_t nk, float* s, int64_t lds) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) {
      _mm512_mask_storeu_ps(s + r * lds + 16 * c, FirstLanes(nk - 16 * c), acc[r][c]);
    }
  }
}

// The accumulator tile of the values' product: R rows (ldacc apart) x V vectors of 16 columns
// from column c0, the last vector `last` lanes wide.
template <int R, int V>
inline void LoadAccumulators(const float* acc, int64_t ldacc, int64_t c0, __mmask16 last,
                             __m512 (&a)[R][V]) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) {
      a[r][c] = _mm512_maskz_loadu_ps(c == V - 1 ? last : __mmask16{0xffff},
                                      acc + r * ldacc + c0 + 16 * c);
    }
  }
}
template <int R, int V>
inline void StoreAccumulators(const __m512 (&a)[R][V], float* acc, int64_t ldacc, int64_t c0,
                              __mmask16 last) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) {
      _mm512_mask_storeu_ps(acc + r * ldacc + c0 + 16 * c, c == V - 1 ? last : __mmask16{0xffff},
                            a[r][c]);
    }
  }
}

// pass.template operator()<R, V>(r, c0, last) over the values' product's output: rows in fours
// then singly, columns in 64s (V = 4) then 16s (V = 1, the last `last` lanes wide).
template <typename Pass>
inline void ForValueTiles(int64_t rows, int64_t dv, const Pass& pass) {
  const auto row_tiles = [&]<int R>(int64_t r) {
    int64_t c = 0;
    for (; c + 64 <= dv; c += 64) pass.template operator()<R, 4>(r, c, __mmask16{0xffff});
    for (; c < dv; c += 16) pass.template operator()<R, 1>(r, c, FirstLanes(dv - c));
  };
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) row_tiles.template operator()<4>(r);
  for (; r < rows; ++r) row_tiles.template operator()<1>(r);
}

// f.template operator()<V>() with V the number of 16-key vectors that nk <= 64 keys fill.
template <typename F>
inline void WithKeyVectors(int64_t nk, const F& f) {
  switch ((nk + 15) / 16) {
    case 1:
      return f.template operator()<1>();
    case 2:
      return f.template operator()<2>();
    case 3:
      return f.template operator()<3>();
    default:
      return f.template operator()<4>();
  }
}

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

#endif  // EXPERTMESH_KERNELS_CPU_ATTENTION_AVX512_COMMON_H_
