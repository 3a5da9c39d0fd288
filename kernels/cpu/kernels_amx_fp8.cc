// W8A16 on the AMX tile unit: fp8 e4m3 weights with 128 x 128 block scales times bf16
// activations. Each 32-row block of weights is widened once per token chunk to bf16 (exact for
// every normal e4m3 value: the exponent rebiased by 120), then multiplied like bf16 weights one
// scale block of k at a time: a block's products are summed in fresh fp32 tiles, which enter
// each output's running sum times the row's scale for that block (one fused multiply-add). The
// order depends on k and the block offsets only, never on the token count (batching
// invariance). e4m3 subnormals (|v| < 2^-6, below 1/28000 of a block's largest weight) become
// zero, the one approximation of this path, as on the AVX512_BF16 kernel.
// Compiled with -mamx-tile -mamx-bf16 -mavx512f like kernels_amx.cc.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu::amx {
namespace {

constexpr int kRebias = 120 << 7;  // e4m3 exponent bias 7 -> bf16 bias 127, in bf16 bits

// 32 e4m3 values as bf16: the sign-extended byte shifted left by 4 puts the sign in bit 15
// (copies in 14..11, masked off), the exponent in bits 10..7 and the mantissa in 6..4; normal
// values then need their exponent rebiased, subnormals (exponent 0) keep only their sign.
inline __m512i Widen32(const uint8_t* p) {
  const __m512i v = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i b =
      _mm512_and_si512(_mm512_slli_epi16(v, 4), _mm512_set1_epi16(static_cast<short>(0x87f0)));
  const __mmask32 normal = _mm512_test_epi16_mask(b, _mm512_set1_epi16(0x0780));
  return _mm512_mask_add_epi16(_mm512_and_si512(b, _mm512_set1_epi16(static_cast<short>(0x8000))),
                               normal, b, _mm512_set1_epi16(kRebias));
}

// The same bits for one value.
inline uint16_t Widen1(uint8_t byte) {
  const uint16_t b =
      static_cast<uint16_t>((static_cast<int16_t>(static_cast<int8_t>(byte)) * 16) & 0x87f0);
  return (b & 0x0780) != 0 ? static_cast<uint16_t>(b + kRebias) : (b & 0x8000);
}

// Rows [0, rows) of w as bf16 into a zero-padded kBlockRows x ld block (ld >= k).
void WidenRows(const uint8_t* w, int64_t ldw, int rows, int64_t k, int64_t ld, uint16_t* dst) {
  std::fill(dst, dst + kBlockRows * ld, uint16_t{0});
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = w + r * ldw;
    uint16_t* row = dst + r * ld;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) _mm512_storeu_si512(row + i, Widen32(src + i));
    for (; i < k; ++i) row[i] = Widen1(src[i]);
  }
}

}  // namespace

void GemmF8(const uint16_t* packed_x, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  if (n <= 0 || rows <= 0) return;
  thread_local std::vector<uint16_t> wide;
  thread_local std::vector<float> c(2 * 2 * kTileRows * kTileRows),
      acc(2 * 2 * kTileRows * kTileRows);
  _tile_loadconfig(&Config());
  const int64_t k_tiles = (k + kTileK - 1) / kTileK;
  const int64_t ld = k_tiles * kTileK;
  const int64_t b_block = k_tiles * kAmxPackedTileElems;
  wide.resize(kBlockRows * ld);
  const float* scale_rows[kBlockRows] = {};
  ForBlocks(
      n, rows,
      [&](int64_t r, int rows_here) {
        WidenRows(w + r * ldw, ldw, rows_here, k, ld, wide.data());
        for (int i = 0; i < kBlockRows; ++i)
          scale_rows[i] = i < rows_here ? scales.Row(r + i) : nullptr;
      },
      [&](int64_t r, int rows_here, int64_t tb, int nb) {
        const int ma = rows_here > kTileRows ? 2 : 1;
        std::fill(acc.begin(), acc.end(), 0.0f);
        // Scale blocks of k; the caller guarantees they start on whole k tiles (col_offset and
        // block_cols multiples of kTileK), so each segment is a run of tiles.
        for (int64_t i = 0; i < k;) {
          const int64_t block = (i + scales.col_offset) / scales.block_cols;
          const int64_t end = std::min(k, (block + 1) * scales.block_cols - scales.col_offset);
          const int64_t kt0 = i / kTileK, kt1 = (end + kTileK - 1) / kTileK;
          const WeightBlock wb{wide.data() + kt0 * kTileK, ld, kt1 - kt0, nullptr};
          RunMicroKernel(ma, nb, wb, packed_x + tb * b_block + kt0 * kAmxPackedTileElems, b_block,
                         c.data());
          for (int a = 0; a < ma; ++a) {
            for (int row = 0; row < kTileRows; ++row) {
              const float* s = scale_rows[a * kTileRows + row];
              const __m512 scale = _mm512_set1_ps(s != nullptr ? s[block] : 0.0f);
              for (int j = 0; j < nb; ++j) {
                const int64_t at = ((a * nb + j) * kTileRows + row) * kTileRows;
                _mm512_storeu_ps(acc.data() + at,
                                 _mm512_fmadd_ps(_mm512_loadu_ps(c.data() + at), scale,
                                                 _mm512_loadu_ps(acc.data() + at)));
              }
            }
          }
          i = end;
        }
        StoreBlock(acc.data(), ma, nb, rows_here, n, tb * kTileRows, out + r, ldo);
      });
  _tile_release();
}

}  // namespace expertmesh::kernels::cpu::amx
