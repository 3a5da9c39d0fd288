// The AMX tile GEMM's building blocks, shared by the bf16 and the fp8-weight kernels
// (kernels_amx.cc, kernels_amx_fp8.cc). Include only from files compiled with -mamx-tile
// -mamx-bf16 -mavx512f; nothing here may run unless CpuSupports(CpuIsa::kAmx).
//
// Roles: the weights are the A operand (16 rows x 32 k per tile, their row-major layout) and the
// activations the B operand (packed by amx_pack_x), so a C tile is 16 weight rows x 16 tokens of
// out^T. A micro-kernel covers up to 32 rows x 32 tokens (4 C, 2 A, 2 B tiles: all 8).
#ifndef EXPERTMESH_KERNELS_CPU_AMX_TILES_H_
#define EXPERTMESH_KERNELS_CPU_AMX_TILES_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu::amx {

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

inline const TileConfig& Config() {
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
  // The next block's weights (same stride), prefetched at the offsets being read; nullptr: none.
  // A one-token product is a stream of weights read once, and 32 rows read side by side are
  // more streams than the hardware prefetcher follows well (measured in the engine at batch 1:
  // 0.78x the AVX512_BF16 kernel's speed without this). Into L2 (PREFETCHT2): a block ahead is
  // 32 rows x k, as much as L1 holds, and there it evicted what the tiles were about to read
  // (into L1, batch 1 on the tiles ran at 0.9x of into L2; 2026-12-06, Xeon).
  const uint16_t* prefetch = nullptr;
};

// C tiles for MA x 16 weight rows and NB x 16 tokens over all of k, stored to `c`
// ([MA][NB][16][16] fp32). b points at the first token block's packed activations; the next
// token block starts `b_block` elements later.
template <int MA, int NB>
inline void MicroKernel(const WeightBlock& wb, const uint16_t* b, int64_t b_block, float* c) {
  static_assert(MA >= 1 && MA <= 2 && NB >= 1 && NB <= 2);
  _tile_zero(0);
  if constexpr (NB == 2) _tile_zero(1);
  if constexpr (MA == 2) _tile_zero(2);
  if constexpr (MA == 2 && NB == 2) _tile_zero(3);
  const int64_t a_stride = wb.ldw * 2;
  const int64_t tiles = wb.full_tiles + (wb.tail != nullptr ? 1 : 0);
  for (int64_t kt = 0; kt < tiles; ++kt) {
    const bool tail = kt == wb.full_tiles;
    if (wb.prefetch != nullptr && !tail) {
      for (int r = 0; r < MA * kTileRows; ++r) {
        __builtin_prefetch(wb.prefetch + r * wb.ldw + kt * kTileK, 0, 1);
      }
    }
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
inline void StoreTransposed(const float* c, int rows, int tokens, float* out, int64_t ldo) {
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
inline void CopyPadded(const uint16_t* w, int64_t ldw, int rows, int64_t k, int64_t col,
                       int64_t width, uint16_t* dst) {
  std::memset(dst, 0, sizeof(uint16_t) * kBlockRows * width);
  const int64_t cols = std::max<int64_t>(0, std::min(width, k - col));
  for (int r = 0; r < rows; ++r) std::memcpy(dst + r * width, w + r * ldw + col, cols * 2);
}

// Runs the micro-kernel for ma row tiles x nb token blocks (each 1 or 2).
inline void RunMicroKernel(int ma, int nb, const WeightBlock& wb, const uint16_t* b,
                           int64_t b_block, float* c) {
  if (ma == 2 && nb == 2) {
    MicroKernel<2, 2>(wb, b, b_block, c);
  } else if (ma == 2) {
    MicroKernel<2, 1>(wb, b, b_block, c);
  } else if (nb == 2) {
    MicroKernel<1, 2>(wb, b, b_block, c);
  } else {
    MicroKernel<1, 1>(wb, b, b_block, c);
  }
}

// Writes a micro-kernel's C tiles (c: [ma][nb][16][16]) for weight rows [0, rows_here) of the
// block and tokens [t0, min(n, t0 + 16 nb)) to out[t * ldo + r] (out: the block's first row).
inline void StoreBlock(const float* c, int ma, int nb, int rows_here, int64_t n, int64_t t0,
                       float* out, int64_t ldo) {
  for (int i = 0; i < ma; ++i) {
    for (int j = 0; j < nb; ++j) {
      const int tile_rows = std::min(kTileRows, rows_here - i * kTileRows);
      const int64_t t = t0 + j * kTileRows;
      const int tokens = static_cast<int>(std::min<int64_t>(kTileRows, n - t));
      StoreTransposed(c + (i * nb + j) * kTileRows * kTileRows, tile_rows, tokens,
                      out + t * ldo + i * kTileRows, ldo);
    }
  }
}

// Tokens are multiplied in chunks of this many 16-token blocks, so that a chunk's packed
// activations (256 tokens x k bf16: 1 MiB at k = 2048) stay in L2 while every weight row block
// of the call passes over them; weights are read once per chunk.
constexpr int64_t kChunkBlocks = 16;

// The loop every AMX GEMM runs: per chunk of tokens, per block of kBlockRows weight rows,
// prepare(r, rows_here) once and then tokens(r, rows_here, tb, nb) for each pair of token blocks
// (tb: first 16-token block; nb: 1 or 2 of them).
template <typename Prepare, typename Tokens>
void ForBlocks(int64_t n, int64_t rows, const Prepare& prepare, const Tokens& tokens) {
  const int64_t token_blocks = (n + kTileRows - 1) / kTileRows;
  for (int64_t chunk = 0; chunk < token_blocks; chunk += kChunkBlocks) {
    const int64_t chunk_end = std::min(token_blocks, chunk + kChunkBlocks);
    for (int64_t r = 0; r < rows; r += kBlockRows) {
      const int rows_here = static_cast<int>(std::min<int64_t>(kBlockRows, rows - r));
      prepare(r, rows_here);
      for (int64_t tb = chunk; tb < chunk_end; tb += 2) {
        tokens(r, rows_here, tb, tb + 1 < chunk_end ? 2 : 1);
      }
    }
  }
}

// The fp8-weight GEMM (kernels_amx_fp8.cc), KernelTable::amx_gemm_f8.
void GemmF8(const uint16_t* packed_x, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo);
// The q4-weight GEMM (kernels_amx_fp8.cc), KernelTable::amx_gemm_q4.
void GemmQ4(const uint16_t* packed_x, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Q4Groups& groups, float* out, int64_t ldo);

}  // namespace expertmesh::kernels::cpu::amx

#endif  // EXPERTMESH_KERNELS_CPU_AMX_TILES_H_
