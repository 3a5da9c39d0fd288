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
#include <vector>

#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/fp8_bf16.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/q4_bf16.h"

namespace expertmesh::kernels::cpu::amx {
namespace {

// Columns widened at a time by the first token pair of a row block: 32 rows x 128 bf16 = 8 KiB,
// so that the tiles read them from L1 right after (a whole widened block at k = 2048 is 128 KiB
// and went through L2: at one token, half the time went to its stores and tile loads).
constexpr int64_t kWidenCols = 128;
static_assert(kWidenCols <= kWidenMaxCols && kBlockRows <= kWidenMaxRows);

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
