// Attention's two products with bf16 operands on AVX512_BF16: VDPBF16PS does 32 multiply-adds
// per instruction where the fp32 FMA of attention_avx512.cc does 16, and reads the cache's bf16
// values as they are, with no widening. flash_attention.cc takes them for bf16 queries and
// caches on the avx512bf16 family (the AMX family runs its tiles). This file alone is compiled
// with -mavx512bf16 -mavx512bw -mavx512f; nothing here runs unless CpuSupports(kAvx512Bf16).
//
// Scores. The block's keys are transposed into pairs once (vector i holds, for 16 keys, their
// values 2i and 2i + 1) and shared by every query row of the tile; a score is one chain over
// the pairs of d, the query's pair broadcast against 16 keys at a time.
// Values. The block's value rows are interleaved in pairs of positions once (for 16 columns,
// positions 2i and 2i + 1) and shared by every row; an output is one chain over the pairs of
// positions, the row's two probabilities broadcast against 16 columns at a time.
// In both, a result depends on its own row and its keys or values only (kernel_table.h).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/attention_avx512_common.h"
#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {
namespace {

inline int64_t Pairs(int64_t n) { return (n + 1) / 2; }
inline int64_t RoundUp16(int64_t n) { return (n + 15) / 16 * 16; }

inline __mmask32 FirstWords(int64_t n) {
  return n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint32_t{1} << n) - 1);
}

// Two consecutive bf16 values as one 32-bit lane, in all 16 lanes.
inline __m512bh BroadcastPair(const uint16_t* p) {
  uint32_t pair;
  std::memcpy(&pair, p, sizeof(pair));
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pair)));
}

// kp[i * kQkMaxKeys + j] = key j's values 2i and 2i + 1 (zero past dk) for i < Pairs(dk), and
// zero for the keys past nk up to a multiple of 16.
void TransposeKeyPairs(const uint16_t* const* keys, int64_t nk, int64_t dk, uint32_t* kp) {
  for (int64_t j0 = 0; j0 < nk; j0 += 16) {
    const int64_t count = std::min<int64_t>(16, nk - j0);
    for (int64_t d0 = 0; d0 < dk; d0 += 32) {
      const __mmask32 words = FirstWords(dk - d0);
      __m512 v[16];
      for (int j = 0; j < 16; ++j) {
        v[j] = j < count ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(words, keys[j0 + j] + d0))
                         : _mm512_setzero_ps();
      }
      Transpose16x16(v);
      const int64_t pairs = std::min<int64_t>(16, Pairs(dk - d0));
      for (int64_t i = 0; i < pairs; ++i) {
        _mm512_storeu_ps(reinterpret_cast<float*>(kp + (d0 / 2 + i) * kQkMaxKeys + j0), v[i]);
      }
    }
  }
}

// R query rows x V vectors of 16 keys.
template <int R, int V>
void ScoreRows(const uint16_t* q, int64_t ldq, int64_t pairs, const uint32_t* kp, int64_t nk,
               float* s, int64_t lds) {
  __m512 acc[R][V];
  ZeroAccumulators(acc);
  for (int64_t i = 0; i < pairs; ++i) {
    __m512bh kv[V];
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) {
      kv[c] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(kp + i * kQkMaxKeys + 16 * c));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512bh qv = BroadcastPair(q + r * ldq + 2 * i);
#pragma GCC unroll 4
      for (int c = 0; c < V; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qv, kv[c]);
    }
  }
  StoreScores(acc, nk, s, lds);
}

template <int V>
void Scores(const uint16_t* q, int64_t ldq, int64_t rows, int64_t pairs, const uint32_t* kp,
            int64_t nk, float* s, int64_t lds) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) ScoreRows<4, V>(q + r * ldq, ldq, pairs, kp, nk, s + r * lds, lds);
  for (; r < rows; ++r) ScoreRows<1, V>(q + r * ldq, ldq, pairs, kp, nk, s + r * lds, lds);
}

void QkBf16Dot(const uint16_t* q, int64_t ldq, int64_t rows, int64_t dk,
               const uint16_t* const* keys, int64_t nk, float* s, int64_t lds) {
  thread_local std::vector<uint32_t> kp;
  const int64_t pairs = Pairs(dk);
  kp.resize(static_cast<size_t>(pairs * kQkMaxKeys));
  TransposeKeyPairs(keys, nk, dk, kp.data());
  WithKeyVectors(nk, [&]<int V>() { Scores<V>(q, ldq, rows, pairs, kp.data(), nk, s, lds); });
}

// vp[i * ldvp + 2 c + h] = values[2i + h][c] for i < Pairs(npos), c < dv (zero for the position
// past an odd npos and for the columns past dv up to a multiple of 16); ldvp = 2 RoundUp16(dv).
void InterleaveValuePairs(const uint16_t* const* values, int64_t npos, int64_t dv, uint16_t* vp,
                          int64_t ldvp) {
  alignas(64) static constexpr auto kLow = [] {
    std::array<uint16_t, 32> idx{};
    for (int c = 0; c < 16; ++c) {
      idx[2 * c] = static_cast<uint16_t>(c);
      idx[2 * c + 1] = static_cast<uint16_t>(32 + c);
    }
    return idx;
  }();
  alignas(64) static constexpr auto kHigh = [] {
    std::array<uint16_t, 32> idx{};
    for (int c = 0; c < 16; ++c) {
      idx[2 * c] = static_cast<uint16_t>(16 + c);
      idx[2 * c + 1] = static_cast<uint16_t>(48 + c);
    }
    return idx;
  }();
  const __m512i low = _mm512_load_si512(kLow.data()), high = _mm512_load_si512(kHigh.data());
  for (int64_t i = 0; i < Pairs(npos); ++i) {
    const uint16_t* a = values[2 * i];
    const uint16_t* b = 2 * i + 1 < npos ? values[2 * i + 1] : nullptr;
    uint16_t* dst = vp + i * ldvp;
    for (int64_t c0 = 0; c0 < dv; c0 += 32) {
      const __mmask32 words = FirstWords(dv - c0);
      const __m512i av = _mm512_maskz_loadu_epi16(words, a + c0);
      const __m512i bv =
          b != nullptr ? _mm512_maskz_loadu_epi16(words, b + c0) : _mm512_setzero_si512();
      _mm512_storeu_si512(dst + 2 * c0, _mm512_permutex2var_epi16(av, low, bv));
      if (c0 + 16 < dv) {
        _mm512_storeu_si512(dst + 2 * c0 + 32, _mm512_permutex2var_epi16(av, high, bv));
      }
    }
  }
}

// R rows x V vectors of 16 columns from column c0 (the last vector `last` lanes wide).
template <int R, int V>
void PvPass(const uint16_t* p, int64_t ldp, int64_t pairs, const uint16_t* vp, int64_t ldvp,
            int64_t c0, __mmask16 last, float* acc, int64_t ldacc) {
  __m512 a[R][V];
  LoadAccumulators<R, V>(acc, ldacc, c0, last, a);
  for (int64_t i = 0; i < pairs; ++i) {
    __m512bh bv[V];
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) {
      bv[c] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(vp + i * ldvp + 2 * (c0 + 16 * c)));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512bh pv = BroadcastPair(p + r * ldp + 2 * i);
#pragma GCC unroll 4
      for (int c = 0; c < V; ++c) a[r][c] = _mm512_dpbf16_ps(a[r][c], pv, bv[c]);
    }
  }
  StoreAccumulators<R, V>(a, acc, ldacc, c0, last);
}

void PvBf16Dot(const uint16_t* p, int64_t ldp, int64_t rows, int64_t npos,
               const uint16_t* const* values, int64_t dv, float* acc, int64_t ldacc) {
  thread_local std::vector<uint16_t> vp;
  const int64_t pairs = Pairs(npos), ldvp = 2 * RoundUp16(dv);
  vp.resize(static_cast<size_t>(pairs * ldvp));
  InterleaveValuePairs(values, npos, dv, vp.data(), ldvp);
  ForValueTiles(rows, dv, [&]<int R, int V>(int64_t r, int64_t c0, __mmask16 last) {
    PvPass<R, V>(p + r * ldp, ldp, pairs, vp.data(), ldvp, c0, last, acc + r * ldacc, ldacc);
  });
}

}  // namespace

void AddAvx512Bf16AttentionKernels(KernelTable& table) {
  table.qk_bf16_dot = QkBf16Dot;
  table.pv_bf16_dot = PvBf16Dot;
}

}  // namespace expertmesh::kernels::cpu
