// Content hashes of KV blocks for the prefix cache and for the router's prefix affinity.
//
// The hash of block i of a token sequence covers tokens [i * block_size, (i + 1) * block_size)
// and the hash of block i - 1 (kRootBlockHash for block 0), so equal hashes mean equal whole
// prefixes (up to 64-bit collisions, which the block pool rules out by comparing tokens).
// The function is fixed and documented so a router can compute the same values from a
// tokenized prompt without linking the worker: see HashKvBlock.
#ifndef EXPERTMESH_WORKER_KV_KV_BLOCK_HASH_H_
#define EXPERTMESH_WORKER_KV_KV_BLOCK_HASH_H_

#include <cstdint>
#include <span>
#include <vector>

namespace expertmesh::kv {

// The "parent" of the first block of every sequence.
inline constexpr uint64_t kRootBlockHash = 0x6a09e667f3bcc908ULL;

// Hash of one block's tokens chained with the hash of the block before it:
//   h = parent ^ (0x9e3779b97f4a7c15 * (count + 1));
//   for each token t: h = Mix64(h ^ (uint32_t)t) (Mix64: the splitmix64 finaliser);
//   result = Mix64(h + 0x632be59bd9b4e019).
// Deterministic across processes, platforms and runs.
uint64_t HashKvBlock(uint64_t parent_hash, std::span<const int32_t> tokens);

// The chained hashes of the full blocks of `tokens` (a trailing partial block has none), at
// most `max_blocks` of them. REQUIRES: block_size > 0.
std::vector<uint64_t> HashFullKvBlocks(std::span<const int32_t> tokens, int block_size,
                                       size_t max_blocks = SIZE_MAX);

}  // namespace expertmesh::kv

#endif  // EXPERTMESH_WORKER_KV_KV_BLOCK_HASH_H_
