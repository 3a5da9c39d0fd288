// bf16 GEMM on the AMX tile unit (TDPBF16PS: a 16 x 32 bf16 tile times a 32 x 16 bf16 tile into
// a 16 x 16 fp32 tile, 16 x 16 x 32 multiply-adds per instruction against 16 x 2 for one
// VDPBF16PS). This file alone is compiled with -mamx-tile -mamx-bf16 (and AVX-512); nothing here
// runs unless CpuSupports(CpuIsa::kAmx), which also asked Linux for the tile state.
//
// Roles: the weights are the A operand and the activations the B operand, so C is out^T.
//  - An A tile is 16 weight rows x 32 k, exactly the row-major layout weights already have:
//    tiles load straight from the resident weights (stride ldw), with no repacking at load
//    and no per-block packing.
//  - B wants pairs of k interleaved per token (the "VNNI" layout). The activations are packed
//    into it once per product (PackX), which costs n x k against the rows x n x k of the GEMM.
//  - The price is a 16 x 16 transpose of each C tile on its way out (a few percent for k >= 512).
//
// Every output element is the same chain of TDPBF16PS over k tiles in ascending order, on the
// same zero-padded tails, whatever the token count, the token's place in its tile, or the row
// range of the call: a token's output does not depend on its batch. (The hardware's order
// inside one instruction is not the one Intel's pseudo-code spells out and matches no
// VDPBF16PS order we tried, so the AVX512_BF16 kernel could not give the same bits.)
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {
namespace {

constexpr int kTileK = kAmxTileK;          // bf16 values of k per tile row (64 bytes)
constexpr int kTileRows = kAmxTileTokens;  // rows of every tile
constexpr int kBlockRows = 2 * kTileRows;  // weight rows per micro-kernel (two A tiles)

// Tiles 0-3: C (fp32 16 x 16), 4-5: A (weights), 6-7: B (packed activations); all 16 x 64 B.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

const TileConfig& Config() {
  static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = 64;
      c.rows[t] = kTileRows;
    }
    return c;
  }();
  return config;
}

// Where a micro-kernel's weight tiles come from: full k tiles at `w` (row stride ldw elements),
// then, if k has a tail, one zero-padded k tile of kBlockRows rows x kTileK at `tail`.
struct WeightBlock {
  const uint16_t* w;
  int64_t ldw;
  int64_t full_tiles;
  const uint16_t* tail;  // nullptr: k is a multiple of kTileK
};

// C tiles for MA x 16 weight rows and NB x 16 tokens over all of k, stored to `c`
// ([MA][NB][16][16] fp32). b points at the first token block's packed activations; the next
// token block starts `b_block` elements later.
template <int MA, int NB>
void MicroKernel(const WeightBlock& wb, const uint16_t* b, int64_t b_block, float* c) {
  static_assert(MA >= 1 && MA <= 2 && NB >= 1 && NB <= 2);
  _tile_zero(0);
  if constexpr (NB == 2) _tile_zero(1);
  if constexpr (MA == 2) _tile_zero(2);
  if constexpr (MA == 2 && NB == 2) _tile_zero(3);
  const int64_t a_stride = wb.ldw * 2;
  const int64_t tiles = wb.full_tiles + (wb.tail != nullptr ? 1 : 0);
  for (int64_t kt = 0; kt < tiles; ++kt) {
    const bool tail = kt == wb.full_tiles;
    const uint16_t* a = tail ? wb.tail : wb.w + kt * kTileK;
    const int64_t stride = tail ? kTileK * 2 : a_stride;
    const uint16_t* bk = b + kt * kAmxPackedTileElems;
    _tile_loadd(4, a, stride);
    _tile_loadd(6, bk, 64);
    if constexpr (MA == 2) _tile_loadd(5, a + kTileRows * stride / 2, stride);
    if constexpr (NB == 2) _tile_loadd(7, bk + b_block, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NB == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (MA == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (MA == 2 && NB == 2) _tile_dpbf16ps(3, 5, 7);
  }
  constexpr int64_t kTileFloats = kTileRows * kTileRows;
  _tile_stored(0, c, 64);
  if constexpr (NB == 2) _tile_stored(1, c + kTileFloats, 64);
  if constexpr (MA == 2) _tile_stored(2, c + NB * kTileFloats, 64);
  if constexpr (MA == 2 && NB == 2) _tile_stored(3, c + 3 * kTileFloats, 64);
}

// c is a 16 x 16 tile: c[i * 16 + j] = out for weight row i, token j. Writes rows < rows and
// tokens < tokens of it to out[j * ldo + i].
void StoreTransposed(const float* c, int rows, int tokens, float* out, int64_t ldo) {
  if (rows == kTileRows) {
    const __m512i column =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                           _mm512_set1_epi32(kTileRows));
    for (int j = 0; j < tokens; ++j) {
      _mm512_storeu_ps(out + j * ldo, _mm512_i32gather_ps(column, c + j, 4));
    }
    return;
  }
  for (int j = 0; j < tokens; ++j) {
    for (int i = 0; i < rows; ++i) out[j * ldo + i] = c[i * kTileRows + j];
  }
}

// Copies weight rows [0, rows) x columns [col, min(col + width, k)) into a zero-padded
// kBlockRows x width block with row stride `width`.
void CopyPadded(const uint16_t* w, int64_t ldw, int rows, int64_t k, int64_t col, int64_t width,
                uint16_t* dst) {
  std::memset(dst, 0, sizeof(uint16_t) * kBlockRows * width);
  const int64_t cols = std::max<int64_t>(0, std::min(width, k - col));
  for (int r = 0; r < rows; ++r) std::memcpy(dst + r * width, w + r * ldw + col, cols * 2);
}

void PackX(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, uint16_t* packed) {
  const int64_t k_tiles = (k + kTileK - 1) / kTileK;
  const int64_t blocks = (n + kTileRows - 1) / kTileRows;
  // Tile (block, kt) row p holds, for each token j of the block, the pair x[j][kt*32 + 2p .. +1]
  // as one 32-bit word: a 16 x 16 transpose of 32-bit pairs. Tokens past n and k past k are 0.
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int tokens = static_cast<int>(std::min<int64_t>(kTileRows, n - blk * kTileRows));
    for (int64_t kt = 0; kt < k_tiles; ++kt) {
      uint32_t* tile =
          reinterpret_cast<uint32_t*>(packed + (blk * k_tiles + kt) * kAmxPackedTileElems);
      const int64_t k0 = kt * kTileK;
      const int64_t width = std::min<int64_t>(kTileK, k - k0);
      if (tokens == kTileRows && width == kTileK) {
        // 16 rows of 16 pairs, transposed with gathers (pair p of every token).
        const __m512i row_start = _mm512_mullo_epi32(
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            _mm512_set1_epi32(static_cast<int>(ldx / 2)));
        const uint16_t* src = x + blk * kTileRows * ldx + k0;
        if (ldx % 2 == 0) {
          for (int p = 0; p < kTileRows; ++p) {
            _mm512_storeu_si512(tile + p * kTileRows,
                                _mm512_i32gather_epi32(row_start, src + 2 * p, 4));
          }
          continue;
        }
      }
      std::memset(tile, 0, sizeof(uint16_t) * kAmxPackedTileElems);
      uint16_t* t16 = reinterpret_cast<uint16_t*>(tile);
      for (int j = 0; j < tokens; ++j) {
        const uint16_t* src = x + (blk * kTileRows + j) * ldx + k0;
        for (int64_t i = 0; i < width; ++i) t16[(i / 2) * 2 * kTileRows + 2 * j + (i % 2)] = src[i];
      }
    }
  }
}

// Tokens are multiplied in chunks of this many 16-token blocks, so that a chunk's packed
// activations (256 tokens x k bf16: 1 MiB at k = 2048) stay in L2 while every weight row block
// of the call passes over them; weights are read once per chunk.
constexpr int64_t kChunkBlocks = 16;

void GemmPacked(const uint16_t* packed_x, int64_t n, int64_t k, const uint16_t* w, int64_t ldw,
                int64_t rows, float* out, int64_t ldo) {
  if (n <= 0 || rows <= 0) return;
  thread_local std::vector<uint16_t> tail_block, row_block;
  thread_local std::vector<float> c(2 * 2 * kTileRows * kTileRows);
  _tile_loadconfig(&Config());
  const int64_t full_tiles = k / kTileK;
  const int64_t k_tiles = (k + kTileK - 1) / kTileK;
  const bool k_tail = k % kTileK != 0;
  const int64_t b_block = k_tiles * kAmxPackedTileElems;  // elements per packed token block
  const int64_t token_blocks = (n + kTileRows - 1) / kTileRows;
  if (k_tail) tail_block.resize(kBlockRows * kTileK);
  for (int64_t chunk = 0; chunk < token_blocks; chunk += kChunkBlocks) {
    const int64_t chunk_end = std::min(token_blocks, chunk + kChunkBlocks);
    for (int64_t r = 0; r < rows; r += kBlockRows) {
      const int rows_here = static_cast<int>(std::min<int64_t>(kBlockRows, rows - r));
      WeightBlock wb{w + r * ldw, ldw, full_tiles, nullptr};
      if (rows_here < kBlockRows) {
        // The last rows of the call, zero-padded to a whole block so that no tile load reads
        // past them: the same values, so the same bits as a whole block would give.
        row_block.resize(kBlockRows * k_tiles * kTileK);
        CopyPadded(wb.w, ldw, rows_here, k, 0, k_tiles * kTileK, row_block.data());
        wb = {row_block.data(), k_tiles * kTileK, k_tiles, nullptr};
      } else if (k_tail) {
        CopyPadded(wb.w, ldw, rows_here, k, full_tiles * kTileK, kTileK, tail_block.data());
        wb.tail = tail_block.data();
      }
      const int ma = rows_here > kTileRows ? 2 : 1;
      for (int64_t tb = chunk; tb < chunk_end; tb += 2) {
        const int nb = tb + 1 < chunk_end ? 2 : 1;
        const uint16_t* b = packed_x + tb * b_block;
        if (ma == 2 && nb == 2) {
          MicroKernel<2, 2>(wb, b, b_block, c.data());
        } else if (ma == 2) {
          MicroKernel<2, 1>(wb, b, b_block, c.data());
        } else if (nb == 2) {
          MicroKernel<1, 2>(wb, b, b_block, c.data());
        } else {
          MicroKernel<1, 1>(wb, b, b_block, c.data());
        }
        for (int i = 0; i < ma; ++i) {
          for (int j = 0; j < nb; ++j) {
            const int tile_rows = std::min(kTileRows, rows_here - i * kTileRows);
            const int64_t t0 = (tb + j) * kTileRows;
            const int tokens = static_cast<int>(std::min<int64_t>(kTileRows, n - t0));
            StoreTransposed(c.data() + (i * nb + j) * kTileRows * kTileRows, tile_rows, tokens,
                            out + t0 * ldo + r + i * kTileRows, ldo);
          }
        }
      }
    }
  }
  // Gives the tile state back so that context switches of this thread stop saving 8 KiB.
  _tile_release();
}

}  // namespace

const KernelTable& AmxKernels() {
  static const KernelTable table = [] {
    KernelTable t = Avx512Bf16Kernels();
    t.amx_pack_x = PackX;
    t.amx_gemm_bf16 = GemmPacked;
    return t;
  }();
  return table;
}

}  // namespace expertmesh::kernels::cpu
