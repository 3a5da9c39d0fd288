// Attention's two products on AVX-512F (the Avx512 table and those built on it): the scores of a
// key block and the probability-weighted sum of values. This file alone is compiled with
// -mavx512f -mfma; nothing here runs unless CpuSupports(CpuIsa::kAvx512).
//
// Scores. The streaming GEMM (gemm_bf16) computes a dot product in 16 lanes and then sums the
// lanes, which for attention's short products (dk = 128: 8 steps, then a 16-lane sum for every
// query x key) spent as much on the sums as on the products. Here the block's keys are first
// transposed into fp32 columns (16 keys per vector, one vector per element of dk), and each
// score is one chain of FMAs over d in ascending order, 16 keys at a time: no lane sums, and the
// transposition is shared by every query row of the tile.
//
// Values. The same order as the AVX2 kernel (acc, then each position's product in ascending
// order, one FMA each), so the same bits, at 64 columns x 4 rows per pass: 16 independent
// chains rather than 4, which the FMA latency left idle.
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/attention_avx512_common.h"
#include "kernels/cpu/avx512_sum.h"
#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {
namespace {

// The first `lanes` (a FirstLanes mask) of 16 bf16 values, the rest zero, without reading past
// them (AVX-512F has no masked 16-bit load).
inline __m512 WidenBf16(const uint16_t* p, __mmask16 lanes) {
  if (lanes == 0xffff) return LoadBf16AsF32(p);
  uint16_t part[16] = {};
  std::memcpy(part, p, sizeof(uint16_t) * std::popcount(static_cast<unsigned>(lanes)));
  return LoadBf16AsF32(part);
}

// The block's keys as fp32 columns: kt[d * kQkMaxKeys + j] = key j's element d, for the
// ceil(nk / 16) vectors of 16 keys that hold keys (keys past nk are zero).
// Whole runs of 32 elements go as 16 pairs: each key's 32 bf16 values are one vector of 16
// 32-bit pairs, transposed as fp32 lanes would be, and each transposed pair vector gives two
// columns (the low halves shifted up, the high halves masked): half the shuffles per element of
// widening first, which at decode (a tile of the group's few rows) cost about what the FMA
// chains saved.
void TransposeKeys(const uint16_t* const* keys, int64_t nk, int64_t dk, float* kt) {
  for (int64_t j0 = 0; j0 < nk; j0 += 16) {
    const int64_t count = std::min<int64_t>(16, nk - j0);
    int64_t d0 = 0;
    for (; d0 + 32 <= dk; d0 += 32) {
      __m512 v[16];
      for (int j = 0; j < 16; ++j) {
        v[j] = j < count ? _mm512_loadu_ps(keys[j0 + j] + d0) : _mm512_setzero_ps();
      }
      Transpose16x16(v);
      for (int p = 0; p < 16; ++p) {
        const __m512i pairs = _mm512_castps_si512(v[p]);
        _mm512_storeu_ps(kt + (d0 + 2 * p) * kQkMaxKeys + j0,
                         _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16)));
        _mm512_storeu_ps(kt + (d0 + 2 * p + 1) * kQkMaxKeys + j0,
                         _mm512_castsi512_ps(_mm512_and_si512(
                             pairs, _mm512_set1_epi32(static_cast<int>(0xffff0000u)))));
      }
    }
    for (; d0 < dk; d0 += 16) {
      const __mmask16 lanes = FirstLanes(dk - d0);
      __m512 v[16];
      for (int j = 0; j < 16; ++j) {
        v[j] = j < count ? WidenBf16(keys[j0 + j] + d0, lanes) : _mm512_setzero_ps();
      }
      Transpose16x16(v);
      const int64_t ds = std::min<int64_t>(16, dk - d0);
      for (int64_t i = 0; i < ds; ++i) _mm512_storeu_ps(kt + (d0 + i) * kQkMaxKeys + j0, v[i]);
    }
  }
}

// Both products' inner loop: acc[r][c] += a[r * lda + j] * b(j, c) for j < steps, each
// accumulator one FMA chain in ascending j. R rows x V vectors of 16 columns in registers.
template <int R, int V, typename Column>
inline void BroadcastFmas(const float* a, int64_t lda, int64_t steps, const Column& b,
                          __m512 (&acc)[R][V]) {
  for (int64_t j = 0; j < steps; ++j) {
    __m512 bv[V];
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) bv[c] = b(j, c);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + j]);
#pragma GCC unroll 4
      for (int c = 0; c < V; ++c) acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
    }
  }
}

// R query rows x V vectors of 16 keys.
template <int R, int V>
void ScoreRows(const float* q, int64_t ldq, int64_t dk, const float* kt, int64_t nk, float* s,
               int64_t lds) {
  __m512 acc[R][V];
  ZeroAccumulators(acc);
  BroadcastFmas<R, V>(
      q, ldq, dk, [&](int64_t d, int v) { return _mm512_loadu_ps(kt + d * kQkMaxKeys + 16 * v); },
      acc);
  StoreScores(acc, nk, s, lds);
}

template <int V>
void Scores(const float* q, int64_t ldq, int64_t rows, int64_t dk, const float* kt, int64_t nk,
            float* s, int64_t lds) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) ScoreRows<4, V>(q + r * ldq, ldq, dk, kt, nk, s + r * lds, lds);
  for (; r < rows; ++r) ScoreRows<1, V>(q + r * ldq, ldq, dk, kt, nk, s + r * lds, lds);
}

void QkBf16(const float* q, int64_t ldq, int64_t rows, int64_t dk, const uint16_t* const* keys,
            int64_t nk, float* s, int64_t lds) {
  thread_local std::vector<float> kt;
  kt.resize(static_cast<size_t>(dk * kQkMaxKeys));
  TransposeKeys(keys, nk, dk, kt.data());
  WithKeyVectors(nk, [&]<int V>() { Scores<V>(q, ldq, rows, dk, kt.data(), nk, s, lds); });
}

// R rows x V vectors of 16 columns from column d0 (the last vector `last` lanes wide).
template <int R, int V>
void PvPass(const float* p, int64_t ldp, int64_t npos, const uint16_t* v, int64_t ldv, int64_t d0,
            __mmask16 last, float* acc, int64_t ldacc) {
  __m512 a[R][V];
  LoadAccumulators<R, V>(acc, ldacc, d0, last, a);
  BroadcastFmas<R, V>(
      p, ldp, npos,
      [&](int64_t j, int c) {
        return WidenBf16(v + j * ldv + d0 + 16 * c, c == V - 1 ? last : __mmask16{0xffff});
      },
      a);
  StoreAccumulators<R, V>(a, acc, ldacc, d0, last);
}

void PvBf16(const float* p, int64_t ldp, int64_t rows, int64_t npos, const uint16_t* v, int64_t ldv,
            int64_t dv, float* acc, int64_t ldacc) {
  ForValueTiles(rows, dv, [&]<int R, int V>(int64_t r, int64_t d0, __mmask16 last) {
    PvPass<R, V>(p + r * ldp, ldp, npos, v, ldv, d0, last, acc + r * ldacc, ldacc);
  });
}

}  // namespace

void AddAvx512AttentionKernels(KernelTable& table) {
  table.qk_bf16 = QkBf16;
  table.pv_bf16 = PvBf16;
}

}  // namespace expertmesh::kernels::cpu
