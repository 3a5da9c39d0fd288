// Flash-style paged attention on the CPU: the internals behind CpuPagedAttention
// (cpu_attention.cc), which validates the batch and hands out tiles to the thread pool.
//
// A tile is up to TileTokens() consecutive queries of one sequence times the q heads of one kv
// head (row r = query r / group, q head r % group). It walks the sequence's keys in blocks of
// kKeyBlock positions, each block starting at a multiple of kKeyBlock (absolute positions),
// with an online softmax (running max and sum per row, accumulators rescaled), so no score row
// over the whole context is ever held, and blocks past the tile's last query are never touched.
//
// Batch and chunking invariance: a row's result is a function of its query, its position and
// the keys/values at positions <= its position, and nothing else. Its scores come from products
// whose per-element order does not depend on the other rows; the blocks it folds in, and the
// keys of each block it sees, are fixed by absolute positions; a block that lies wholly past a
// row (visited because a later query of the same tile sees it) leaves that row untouched. So a
// token gets the same bits alone or batched, in one prefill or chunked any way, and at decode
// (one query) as inside a prefill tile, within one kernel family. The families differ in bits:
// with bf16 queries and caches, AMX (tile products) and AVX512_BF16 (VDPBF16PS, the table's
// qk_bf16_dot and pv_bf16_dot) multiply bf16 probabilities, the others fp32 ones; a backend
// uses one family.
#ifndef EXPERTMESH_KERNELS_CPU_FLASH_ATTENTION_H_
#define EXPERTMESH_KERNELS_CPU_FLASH_ATTENTION_H_

#include <cstdint>

#include "kernels/cpu/cpu_backend.h"

namespace expertmesh::kernels::cpu::flash {

// Keys per block: a multiple of the AMX tile's 32 bf16 values of k (so the probability-value
// product has no key tail) and small enough that a block's scores stay in L1 for 256 rows.
inline constexpr int64_t kKeyBlock = 64;

// What every tile of one call shares. Pointers are the tensors' data; shapes in elements.
struct Params {
  const void* q;  // [n, q_heads, dk] bf16 (q_bf16) or f32
  bool q_bf16;
  const void* k;  // [num_blocks, block_size, kv_heads, dk] bf16 (cache_bf16) or f32
  const void* v;  // [num_blocks, block_size, kv_heads, dv], same dtype as k
  bool cache_bf16;
  int64_t q_heads, kv_heads, group, dk, dv, block_size, max_blocks;
  const int32_t* tables;  // [seqs, max_blocks] block ids (validated by the caller)
  float scale;
};

struct Tile {
  int32_t seq;
  int32_t first_token;  // row of q of the tile's first query
  int32_t count;        // queries in the tile
  int32_t first_pos;    // absolute position of the first query
};

// Whether RunTileAmx serves this call: the AMX family with bf16 queries and a bf16 cache.
bool UseAmx(const CpuContext& ctx, const Params& p);
// Queries per tile for a call with this group size. Any value gives the same bits; larger ones
// read each key block for more rows.
int32_t TileTokens(const CpuContext& ctx, const Params& p);

// Both write the tile's attention output, normalised, as f32 rows: out[r * dv + d] for
// r < count * group.
// The kernel table's products (any family): fp32 probabilities and scores, or, for bf16 queries
// and caches where the table has the bf16 dot products, bf16 ones.
void RunTile(const CpuContext& ctx, const Params& p, const Tile& t, int64_t kvh, float* out);
// AMX tiles for both products (flash_attention_amx.cc). REQUIRES: UseAmx(ctx, p).
void RunTileAmx(const Params& p, const Tile& t, int64_t kvh, float* out);

// The cache row (dk or dv elements) of position pos of the tile's sequence for kv head kvh.
inline int64_t CacheRow(const Params& p, const Tile& t, int64_t kvh, int64_t pos) {
  const int64_t block = p.tables[static_cast<int64_t>(t.seq) * p.max_blocks + pos / p.block_size];
  return (block * p.block_size + pos % p.block_size) * p.kv_heads + kvh;
}

}  // namespace expertmesh::kernels::cpu::flash

#endif  // EXPERTMESH_KERNELS_CPU_FLASH_ATTENTION_H_
