// Content hashes of KV blocks: part of the contract between router and worker. The worker's
// prefix cache (worker/kv) names blocks by them and reports the cached ones; the router
// (router/worker_pool.cc) hashes a tokenized prompt the same way for prefix affinity. Both link
// this library, so neither depends on the other.
//
// The hash of block i of a token sequence covers tokens [i * block_size, (i + 1) * block_size)
// and the hash of block i - 1 (kRootBlockHash for block 0), so equal hashes mean equal whole
// prefixes (up to 64-bit collisions, which the block pool rules out by comparing tokens).
// The function is fixed and documented (see HashKvBlock); tests pin its values.
#ifndef EXPERTMESH_MODEL_PLAN_KV_BLOCK_HASH_H_
#define EXPERTMESH_MODEL_PLAN_KV_BLOCK_HASH_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace expertmesh::model {

// The "parent" of the first block of every sequence without a cache salt.
inline constexpr uint64_t kRootBlockHash = 0x6a09e667f3bcc908ULL;

// The parent of the first block for requests with `cache_salt` (per-tenant prefix caching:
// blocks hashed under different salts never match, so one tenant cannot probe another's
// cached prompts). kRootBlockHash for an empty salt; otherwise
//   h = kRootBlockHash ^ (0x9e3779b97f4a7c15 * (salt bytes + 1));
//   for each salt byte b: h = Mix64(h ^ b);  result = Mix64(h + 0xa4093822299f31d0).
uint64_t KvRootHash(std::string_view cache_salt);

// Hash of one block's tokens chained with the hash of the block before it:
//   h = parent ^ (0x9e3779b97f4a7c15 * (count + 1));
//   for each token t: h = Mix64(h ^ (uint32_t)t) (Mix64: SplitMix64Mix, common/splitmix64.h);
//   result = Mix64(h + 0x632be59bd9b4e019).
// Deterministic across processes, platforms and runs.
uint64_t HashKvBlock(uint64_t parent_hash, std::span<const int32_t> tokens);

// The chained hashes of the full blocks of `tokens` (a trailing partial block has none), at
// most `max_blocks` of them, block 0 chained to `root` (KvRootHash of the request's salt).
// REQUIRES: block_size > 0.
std::vector<uint64_t> HashFullKvBlocks(std::span<const int32_t> tokens, int block_size,
                                       size_t max_blocks = SIZE_MAX,
                                       uint64_t root = kRootBlockHash);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_PLAN_KV_BLOCK_HASH_H_
