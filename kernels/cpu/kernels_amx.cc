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

#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {
namespace {

using amx::kBlockRows;
using amx::kTileK;
using amx::kTileRows;

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

void GemmPacked(const uint16_t* packed_x, int64_t n, int64_t k, const uint16_t* w, int64_t ldw,
                int64_t rows, float* out, int64_t ldo) {
  if (n <= 0 || rows <= 0) return;
  thread_local std::vector<uint16_t> tail_block, row_block;
  thread_local std::vector<float> c(2 * 2 * kTileRows * kTileRows);
  _tile_loadconfig(&amx::Config());
  const int64_t full_tiles = k / kTileK;
  const int64_t k_tiles = (k + kTileK - 1) / kTileK;
  const bool k_tail = k % kTileK != 0;
  const int64_t b_block = k_tiles * kAmxPackedTileElems;  // elements per packed token block
  if (k_tail) tail_block.resize(kBlockRows * kTileK);
  amx::WeightBlock wb{};
  // Only a row block's first token blocks prefetch the next block (the later ones find this
  // block in cache), and only a whole next block of this call (the rows after it are not ours).
  const uint16_t* next = nullptr;
  amx::ForBlocks(
      n, rows,
      [&](int64_t r, int rows_here) {
        next = r + 2 * kBlockRows <= rows ? w + (r + kBlockRows) * ldw : nullptr;
        wb = {w + r * ldw, ldw, full_tiles, nullptr};
        if (rows_here < kBlockRows) {
          // The last rows of the call, zero-padded to a whole block so that no tile load reads
          // past them: the same values, so the same bits as a whole block would give.
          row_block.resize(kBlockRows * k_tiles * kTileK);
          amx::CopyPadded(wb.w, ldw, rows_here, k, 0, k_tiles * kTileK, row_block.data());
          wb = {row_block.data(), k_tiles * kTileK, k_tiles, nullptr};
        } else if (k_tail) {
          amx::CopyPadded(wb.w, ldw, rows_here, k, full_tiles * kTileK, kTileK, tail_block.data());
          wb.tail = tail_block.data();
        }
      },
      [&](int64_t r, int rows_here, int64_t tb, int nb) {
        const int ma = rows_here > kTileRows ? 2 : 1;
        wb.prefetch = next;
        next = nullptr;
        amx::RunMicroKernel(ma, nb, wb, packed_x + tb * b_block, b_block, c.data());
        amx::StoreBlock(c.data(), ma, nb, rows_here, n, tb * kTileRows, out + r, ldo);
      });
  // Gives the tile state back so that context switches of this thread stop saving 8 KiB.
  _tile_release();
}

}  // namespace

const KernelTable& AmxKernels() {
  static const KernelTable table = [] {
    KernelTable t = Avx512Bf16Kernels();
    t.amx_pack_x = PackX;
    t.amx_gemm_bf16 = GemmPacked;
    t.amx_gemm_f8 = amx::GemmF8;
    t.amx_gemm_q4 = amx::GemmQ4;
    return t;
  }();
  return table;
}

}  // namespace expertmesh::kernels::cpu
