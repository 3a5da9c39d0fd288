// W8A16 on the AMX tile unit: fp8 e4m3 weights with block scales times bf16 activations. Each
// 32-row block of weights is widened once per token chunk to bf16 values of w x s (the e4m3
// value times its block scale, rounded to fp32 and then to bf16, nearest even; e4m3 subnormals
// read as zero), and multiplied exactly like bf16 weights (kernels_amx.cc): one chain of tile
// products over all of k per output, in ascending order, whatever the token count (batching
// invariance).
//
// Why the scale goes into the weights: summing each 128-wide scale block in fresh tiles and
// scaling the sums (exact weights) cut every output's chain into k / 128 chains of 4 tile
// products, each a tile store and a scaling pass: at one token the tile unit then waited on its
// own latency (4 dependent products per chain) and fp8 ran at 0.40x the speed of bf16 in the
// engine (2-vCPU Xeon, 2026-12-06). Rounding w x s to bf16 costs a relative 2^-9 per weight, the
// precision of a bf16 checkpoint.
// q4 weights take the same path (GemmQ4): each block widened to bf16((q - zero) x scale) through
// the per-group tables of q4_bf16.h.
// Compiled with -mamx-tile -mamx-bf16 -mavx512bf16 -mavx512f like kernels_amx.cc, and with
// -mavx512bw -mavx512vbmi for the widening table (the amx family requires both: cpu_features.h).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/q4_bf16.h"

namespace expertmesh::kernels::cpu::amx {
namespace {

constexpr float kUnbias = 0x1p120f;  // undoes Widen16's 2^-120

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
  if (two_step) f *= kUnbias;
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
    lo = _mm512_mul_ps(lo, _mm512_set1_ps(kUnbias));
    hi = _mm512_mul_ps(hi, _mm512_set1_ps(kUnbias));
  }
  return reinterpret_cast<__m512i>(
      _mm512_cvtne2ps_pbh(_mm512_mul_ps(hi, mult), _mm512_mul_ps(lo, mult)));
}

// Columns widened at a time by the first token pair of a row block: 32 rows x 128 bf16 = 8 KiB,
// so that the tiles read them from L1 right after (a whole widened block at k = 2048 is 128 KiB
// and went through L2: at one token, half the time went to its stores and tile loads).
constexpr int64_t kWidenCols = 128;

// Every e4m3 magnitude (bytes 0..127) as Widen32 turns it into bf16 for one multiplier, split
// into the high and the low bytes of the bf16 values, 128 of each in two registers: a table that
// VPERMI2B reads with the weight byte itself as the index (it ignores bit 7, the sign).
struct WidenTable {
  __m512i hi0, hi1, lo0, lo1;
  float mult = 0;
  bool two_step = false;
  bool valid = false;
};

inline __m512i Concat(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

void BuildWidenTable(float m, bool two_step, WidenTable& t) {
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
  t.hi0 = Concat(hi[0], hi[1]);
  t.hi1 = Concat(hi[2], hi[3]);
  t.lo0 = Concat(lo[0], lo[1]);
  t.lo1 = Concat(lo[2], lo[3]);
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
const __m512i& SpreadIndex() {
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

// Columns [k0, k1) (k0 a multiple of kTileK) of rows [0, rows) of w as bf16 (w x s) into dst
// (row stride ld >= k, columns as in w); when k1 == k, columns from k up to ld are zeroed: the
// packed activations are zero there and 0 x (garbage) could be NaN. Meanwhile the same bytes of
// the `next` rows (the following row block; nullptr: none) are prefetched into L2: a small token
// count reads each weight once, and the 32 rows of a block side by side are more streams than the
// hardware prefetcher follows (into L1 they evicted the widened block: batch 32 ran at 0.8x). Each
// value comes out the same however the columns are split, and whether it goes through the table
// (runs of 64 in one scale block; rows of a block mostly share their scale, so one table serves up
// to 32 x 128 weights) or through Widen32.
void WidenColumns(const uint8_t* w, int64_t ldw, int rows, int64_t k0, int64_t k1, int64_t k,
                  const Fp8Scales& scales, int64_t row, int64_t ld, uint16_t* dst,
                  const uint8_t* next, WidenTable& table) {
  // The scale-block segments of [k0, k1), the same for every row (at most kWidenCols + 1).
  struct Segment {
    int64_t begin, end, block;
  };
  std::array<Segment, kWidenCols + 1> segments;
  int count = 0;
  for (int64_t i = k0; i < k1; ++count) {
    const int64_t block = (i + scales.col_offset) / scales.block_cols;
    const int64_t end = std::min(k1, (block + 1) * scales.block_cols - scales.col_offset);
    segments[count] = {i, end, block};
    i = end;
  }
  const __m512i spread = SpreadIndex();
  // Each row's scale row, found without a division per row.
  const float* scale_rows[kBlockRows];
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
      const float folded = scale * kUnbias;
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

// The C tiles for MA x 16 weight rows and NB x 16 tokens: zeroed, then tile products over
// k tiles [kt0, kt1) of the widened block `a` (row stride ld) and the packed activations b
// (the next token block b_block elements on), then stored to c ([MA][NB][16][16] fp32). The
// same chain as amx_tiles.h's MicroKernel, split so that widening can run between its parts.
template <int MA, int NB>
inline void ZeroTiles() {
  _tile_zero(0);
  if constexpr (NB == 2) _tile_zero(1);
  if constexpr (MA == 2) _tile_zero(2);
  if constexpr (MA == 2 && NB == 2) _tile_zero(3);
}
template <int MA, int NB>
inline void TileProducts(const uint16_t* a, int64_t ld, int64_t kt0, int64_t kt1, const uint16_t* b,
                         int64_t b_block) {
  for (int64_t kt = kt0; kt < kt1; ++kt) {
    const uint16_t* ak = a + kt * kTileK;
    const uint16_t* bk = b + kt * kAmxPackedTileElems;
    _tile_loadd(4, ak, ld * 2);
    _tile_loadd(6, bk, 64);
    if constexpr (MA == 2) _tile_loadd(5, ak + kTileRows * ld, ld * 2);
    if constexpr (NB == 2) _tile_loadd(7, bk + b_block, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NB == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (MA == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (MA == 2 && NB == 2) _tile_dpbf16ps(3, 5, 7);
  }
}
template <int MA, int NB>
inline void StoreTiles(float* c) {
  constexpr int64_t kTileFloats = kTileRows * kTileRows;
  _tile_stored(0, c, 64);
  if constexpr (NB == 2) _tile_stored(1, c + kTileFloats, 64);
  if constexpr (MA == 2) _tile_stored(2, c + NB * kTileFloats, 64);
  if constexpr (MA == 2 && NB == 2) _tile_stored(3, c + 3 * kTileFloats, 64);
}

// One row block x token pair. `widen` (nullptr: the block is widened already) widens columns
// [k0, k1) of the block; it runs one step ahead of the tiles, so that no tile load reads lines
// whose vector stores are still in flight.
template <int MA, int NB, typename Widen>
void BlockProducts(const uint16_t* a, int64_t ld, int64_t k, const uint16_t* b, int64_t b_block,
                   const Widen* widen, float* c) {
  const int64_t k_tiles = (k + kTileK - 1) / kTileK;
  ZeroTiles<MA, NB>();
  if (widen == nullptr) {
    TileProducts<MA, NB>(a, ld, 0, k_tiles, b, b_block);
  } else {
    (*widen)(0, std::min(k, kWidenCols));
    for (int64_t k0 = 0; k0 < k; k0 += kWidenCols) {
      const int64_t k1 = std::min(k, k0 + kWidenCols);
      if (k1 < k) (*widen)(k1, std::min(k, k1 + kWidenCols));
      TileProducts<MA, NB>(a, ld, k0 / kTileK, (k1 + kTileK - 1) / kTileK, b, b_block);
    }
  }
  StoreTiles<MA, NB>(c);
}

// The tile GEMM on weights widened to bf16 block by block as the products need them:
// widen_block(r, rows_here, k0, k1, next, dst, ld) writes columns [k0, k1) of rows
// [r, r + rows_here) as bf16 into dst (row stride ld; when k1 == k, columns k..ld zeroed) and
// prefetches the same bytes of the block starting at row `next` (-1: none).
template <typename WidenBlock>
void GemmWidened(const uint16_t* packed_x, int64_t n, int64_t k, int64_t rows, float* out,
                 int64_t ldo, const WidenBlock& widen_block) {
  if (n <= 0 || rows <= 0) return;
  thread_local std::vector<uint16_t> wide;
  alignas(64) float c[2 * 2 * kTileRows * kTileRows];
  _tile_loadconfig(&Config());
  const int64_t k_tiles = (k + kTileK - 1) / kTileK;
  // The widened block's row stride: whole tiles and one more, so that it is no multiple of
  // 4 KiB. At k = 2048 the rows would be 4 KiB apart, all 32 rows of a column range would fall in
  // the same L1 sets, and each tile load would miss L1 (measured: the tile products took longer
  // than the bf16 kernel's, which read their weights from memory).
  const int64_t ld = (k_tiles + 1) * kTileK;
  const int64_t b_block = k_tiles * kAmxPackedTileElems;
  if (static_cast<int64_t>(wide.size()) < kBlockRows * ld) wide.resize(kBlockRows * ld);
  int64_t widened_block = -1;  // the row block `wide` holds
  ForBlocks(
      n, rows,
      [&](int64_t r, int rows_here) {
        // Rows past the call's last one are zero (their outputs are never stored, but a NaN
        // left there by an earlier call must not be read).
        if (rows_here < kBlockRows) {
          std::fill(wide.begin() + rows_here * ld, wide.begin() + kBlockRows * ld, uint16_t{0});
        }
      },
      [&](int64_t r, int rows_here, int64_t tb, int nb) {
        const int ma = rows_here > kTileRows ? 2 : 1;
        // The first token pair of a row block widens it on the way (later pairs and chunks
        // reuse it) and prefetches the next block of the call.
        const int64_t next = r + 2 * kBlockRows <= rows ? r + kBlockRows : -1;
        const auto widen_columns = [&](int64_t k0, int64_t k1) {
          widen_block(r, rows_here, k0, k1, next, wide.data(), ld);
        };
        const decltype(widen_columns)* widen = widened_block == r ? nullptr : &widen_columns;
        widened_block = r;
        const uint16_t* b = packed_x + tb * b_block;
        if (ma == 2 && nb == 2) {
          BlockProducts<2, 2>(wide.data(), ld, k, b, b_block, widen, c);
        } else if (ma == 2) {
          BlockProducts<2, 1>(wide.data(), ld, k, b, b_block, widen, c);
        } else if (nb == 2) {
          BlockProducts<1, 2>(wide.data(), ld, k, b, b_block, widen, c);
        } else {
          BlockProducts<1, 1>(wide.data(), ld, k, b, b_block, widen, c);
        }
        StoreBlock(c, ma, nb, rows_here, n, tb * kTileRows, out + r, ldo);
      });
  _tile_release();
}

// Columns [k0, k1) of rows [0, rows) of a q4 weight as bf16 through the (row, group) tables of
// q4_bf16.h (the values gemm_q4_xbf16 multiplies), prefetching the next block's bytes into L2
// as WidenColumns does.
void WidenQ4Columns(const uint8_t* w, int64_t ldw, int rows, int64_t k0, int64_t k1, int64_t k,
                    const Q4Groups& groups, int64_t row, int64_t ld, uint16_t* dst,
                    const uint8_t* next) {
  const int64_t group = groups.Group(k0);
  for (int r = 0; r < rows; ++r) {
    if (next != nullptr) {
      for (int64_t i = k0; i < k1; i += 128) __builtin_prefetch(next + r * ldw + i / 2, 0, 1);
    }
    uint16_t* out = dst + r * ld;
    WidenQ4Row(w + r * ldw, k, k0, k1, groups, group, row + r, out);
    if (k1 == k) std::fill(out + k, out + ld, uint16_t{0});
  }
}

}  // namespace

void GemmF8(const uint16_t* packed_x, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  WidenTable table;
  GemmWidened(packed_x, n, k, rows, out, ldo,
              [&](int64_t r, int rows_here, int64_t k0, int64_t k1, int64_t next, uint16_t* dst,
                  int64_t ld) {
                WidenColumns(w + r * ldw, ldw, rows_here, k0, k1, k, scales, r, ld, dst,
                             next < 0 ? nullptr : w + next * ldw, table);
              });
}

void GemmQ4(const uint16_t* packed_x, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) {
  GemmWidened(packed_x, n, k, rows, out, ldo,
              [&](int64_t r, int rows_here, int64_t k0, int64_t k1, int64_t next, uint16_t* dst,
                  int64_t ld) {
                WidenQ4Columns(w + r * ldw, ldw, rows_here, k0, k1, k, groups, r, ld, dst,
                               next < 0 ? nullptr : w + next * ldw);
              });
}

}  // namespace expertmesh::kernels::cpu::amx
