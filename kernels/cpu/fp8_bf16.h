// fp8 e4m3 weights widened to bf16 of fp32(value x block scale) on AVX-512 (BF16 + BW + VBMI),
// shared by the AMX tile GEMM (kernels_amx_fp8.cc) and the AVX512_BF16 family's widening for
// prefill-sized products (kernels_avx512_bf16_widen.cc). Include only from files compiled with
// -mavx512bf16 -mavx512bw -mavx512vbmi -mavx512f.
#ifndef EXPERTMESH_KERNELS_CPU_FP8_BF16_H_
#define EXPERTMESH_KERNELS_CPU_FP8_BF16_H_

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {

// The most columns and rows one WidenColumns call takes.
inline constexpr int64_t kWidenMaxCols = 128;
inline constexpr int kWidenMaxRows = 32;

inline constexpr float kWidenUnbias = 0x1p120f;  // undoes Widen16's 2^-120

// 16 e4m3 values as fp32, each times 2^-120: the sign-extended byte shifted left by 20 puts the
// sign in bit 31 (copies in 30..28, masked off), the exponent in bits 26..23 and the mantissa in
// 22..20, an fp32 with the exponent 120 less, exact for normal e4m3 values. e4m3 subnormals
// (|v| < 2^-6, below 1/28000 of a block's largest weight) become zero, as on the AVX512_BF16
// kernel: they would be fp32 subnormals here, and each multiplication of one takes a microcode
// assist (measured: a weight of uniformly random bytes ran 20x slower).
inline __m512 Widen16(const uint8_t* p) {
  const __m512i v = _mm512_slli_epi32(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 20);
  const __mmask16 normal = _mm512_test_epi32_mask(v, _mm512_set1_epi32(0x07800000));
  return _mm512_castsi512_ps(
      _mm512_maskz_and_epi32(normal, v, _mm512_set1_epi32(static_cast<int>(0x87f00000u))));
}

// What one weight becomes: bf16 of fp32(value x scale), as Widen32 computes it.
inline uint16_t Widen1(uint8_t byte, float mult, bool two_step) {
  const uint32_t v = static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(byte))) << 20;
  const uint32_t bits = (v & 0x07800000u) != 0 ? v & 0x87f00000u : 0;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  if (two_step) f *= kWidenUnbias;
  f *= mult;
  uint32_t out;
  std::memcpy(&out, &f, sizeof(out));
  // VCVTNE2PS2BF16 flushes fp32 subnormals to zero, then rounds to nearest even (no NaN can
  // arise: e4m3 bytes widen to finite values, and finite scales keep them finite).
  if ((out & 0x7f800000u) == 0) return static_cast<uint16_t>((out >> 16) & 0x8000);
  return static_cast<uint16_t>((out + 0x7fff + ((out >> 16) & 1)) >> 16);
}

// 32 weights of one scale block as bf16 of w x s. `mult` is the scale times 2^120, exact while
// finite; where that overflows (two_step), the widened values are first brought back by 2^120
// (exact: e4m3 values are finite) and then multiplied by the scale itself.
inline __m512i Widen32(const uint8_t* p, __m512 mult, bool two_step) {
  __m512 lo = Widen16(p), hi = Widen16(p + 16);
  if (two_step) {
    lo = _mm512_mul_ps(lo, _mm512_set1_ps(kWidenUnbias));
    hi = _mm512_mul_ps(hi, _mm512_set1_ps(kWidenUnbias));
  }
  return reinterpret_cast<__m512i>(
      _mm512_cvtne2ps_pbh(_mm512_mul_ps(hi, mult), _mm512_mul_ps(lo, mult)));
}

// Every e4m3 magnitude (bytes 0..127) as Widen32 turns it into bf16 for one multiplier, split
// into the high and the low bytes of the bf16 values, 128 of each in two registers: a table that
// VPERMI2B reads with the weight byte itself as the index (it ignores bit 7, the sign).
struct WidenTable {
  __m512i hi0, hi1, lo0, lo1;
  float mult = 0;
  bool two_step = false;
  bool valid = false;
};

inline __m512i Concat256(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline void BuildWidenTable(float m, bool two_step, WidenTable& t) {
  alignas(64) static constexpr auto kMagnitudes = [] {
    std::array<uint8_t, 128> bytes{};
    for (int i = 0; i < 128; ++i) bytes[i] = static_cast<uint8_t>(i);
    return bytes;
  }();
  const __m512 mult = _mm512_set1_ps(m);
  __m256i hi[4], lo[4];
  for (int q = 0; q < 4; ++q) {
    const __m512i words = Widen32(kMagnitudes.data() + 32 * q, mult, two_step);
    hi[q] = _mm512_cvtepi16_epi8(_mm512_srli_epi16(words, 8));
    lo[q] = _mm512_cvtepi16_epi8(words);
  }
  t.hi0 = Concat256(hi[0], hi[1]);
  t.hi1 = Concat256(hi[2], hi[3]);
  t.lo0 = Concat256(lo[0], lo[1]);
  t.lo1 = Concat256(lo[2], lo[3]);
  t.mult = m;
  t.two_step = two_step;
  t.valid = true;
}

// 64 weights through the table: each is its magnitude's bf16 with the byte's sign bit flipped
// into it, which is Widen32's value (rounding to nearest even and flushing to zero are symmetric
// in the sign; an e4m3 subnormal, zero there, may come out as -0 here, and a sum of products
// that starts at +0 does not see the difference). The bytes are first spread so that the
// in-lane byte interleave of high and low halves leaves the 64 values in order: three
// permutes, an XOR and two interleaves per 64 weights, against about 20 operations of widening
// through fp32 (measured on the Xeon with the weights in its LLC: a 2048 x 16384 product 3.4 ->
// 2.7 ms; in the engine, where the weights come from memory, no measurable change).
inline void WidenThroughTable(const uint8_t* p, const WidenTable& t, __m512i spread,
                              uint16_t* out) {
  const __m512i bytes = _mm512_permutexvar_epi8(spread, _mm512_loadu_si512(p));
  const __m512i lo = _mm512_permutex2var_epi8(t.lo0, bytes, t.lo1);
  // hi ^ (bytes & 0x80): ternary-logic table 0x78 for A ^ (B & C).
  const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(t.hi0, bytes, t.hi1), bytes,
                                               _mm512_set1_epi8(static_cast<char>(0x80)), 0x78);
  _mm512_storeu_si512(out, _mm512_unpacklo_epi8(lo, hi));
  _mm512_storeu_si512(out + 32, _mm512_unpackhi_epi8(lo, hi));
}

// WidenThroughTable's spread: byte j of lane L (16 bytes per lane) takes weight 8L + j (j < 8)
// or 32 + 8L + j - 8.
inline const __m512i& SpreadIndex() {
  static const __m512i spread = [] {
    alignas(64) uint8_t idx[64];
    for (int lane = 0; lane < 4; ++lane) {
      for (int j = 0; j < 8; ++j) {
        idx[lane * 16 + j] = static_cast<uint8_t>(8 * lane + j);
        idx[lane * 16 + 8 + j] = static_cast<uint8_t>(32 + 8 * lane + j);
      }
    }
    return _mm512_load_si512(idx);
  }();
  return spread;
}

// Columns [k0, k1) (k0 a multiple of 32, k1 - k0 <= kWidenMaxCols) of rows [0, rows)
// (rows <= kWidenMaxRows) of w as bf16 (w x s) into dst
// (row stride ld >= k, columns as in w); when k1 == k, columns from k up to ld are zeroed: the
// packed activations are zero there and 0 x (garbage) could be NaN. Meanwhile the same bytes of
// the `next` rows (the following row block; nullptr: none) are prefetched into L2: a small token
// count reads each weight once, and the 32 rows of a block side by side are more streams than the
// hardware prefetcher follows (into L1 they evicted the widened block: batch 32 ran at 0.8x). Each
// value comes out the same however the columns are split, and whether it goes through the table
// (runs of 64 in one scale block; rows of a block mostly share their scale, so one table serves up
// to 32 x 128 weights) or through Widen32.
inline void WidenColumns(const uint8_t* w, int64_t ldw, int rows, int64_t k0, int64_t k1, int64_t k,
                         const Fp8Scales& scales, int64_t row, int64_t ld, uint16_t* dst,
                         const uint8_t* next, WidenTable& table) {
  // The scale-block segments of [k0, k1), the same for every row (at most kWidenMaxCols + 1).
  struct Segment {
    int64_t begin, end, block;
  };
  std::array<Segment, kWidenMaxCols + 1> segments;
  int count = 0;
  for (int64_t i = k0; i < k1; ++count) {
    const int64_t block = (i + scales.col_offset) / scales.block_cols;
    const int64_t end = std::min(k1, (block + 1) * scales.block_cols - scales.col_offset);
    segments[count] = {i, end, block};
    i = end;
  }
  const __m512i spread = SpreadIndex();
  // Each row's scale row, found without a division per row.
  const float* scale_rows[kWidenMaxRows];
  {
    int64_t scale_row = (row + scales.row_offset) / scales.block_rows;
    int64_t boundary = (scale_row + 1) * scales.block_rows - scales.row_offset - row;
    for (int r = 0; r < rows; ++r) {
      if (r == boundary) {
        ++scale_row;
        boundary += scales.block_rows;
      }
      scale_rows[r] = scales.scales + scale_row * scales.ld;
    }
  }
  for (int j = 0; j < count; ++j) {
    const int64_t end = segments[j].end;
    for (int r = 0; r < rows; ++r) {
      const uint8_t* src = w + r * ldw;
      uint16_t* out = dst + r * ld;
      const float scale = scale_rows[r][segments[j].block];
      const float folded = scale * kWidenUnbias;
      const bool two_step = !(std::fabs(folded) <= std::numeric_limits<float>::max());
      const float m = two_step ? scale : folded;
      int64_t i = segments[j].begin;
      if (end - i >= 64) {
        if (!table.valid || table.two_step != two_step ||
            std::bit_cast<uint32_t>(table.mult) != std::bit_cast<uint32_t>(m)) {
          BuildWidenTable(m, two_step, table);
        }
        // In registers for the loop (the stores to `out` could alias the table in memory).
        const WidenTable t = table;
        for (; i + 64 <= end; i += 64) {
          if (next != nullptr) __builtin_prefetch(next + r * ldw + i, 0, 1);
          WidenThroughTable(src + i, t, spread, out + i);
        }
      }
      const __m512 mult = _mm512_set1_ps(m);
      for (; i + 32 <= end; i += 32) {
        if (next != nullptr && (i & 63) == 0) __builtin_prefetch(next + r * ldw + i, 0, 1);
        _mm512_storeu_si512(out + i, Widen32(src + i, mult, two_step));
      }
      for (; i < end; ++i) out[i] = Widen1(src[i], m, two_step);
      if (k1 == k && j == count - 1) std::fill(out + k, out + ld, uint16_t{0});
    }
  }
}

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_FP8_BF16_H_
