// KvBlockPool: the fixed set of KV cache blocks of one worker, their reference counts and the
// prefix-cache index (content hash -> block).
//
// Every block is in exactly one state:
//   free       ref_count 0, no hash               (in the free list)
//   evictable  ref_count 0, hashed                (in the LRU list; reusable by a prefix hit)
//   used       ref_count > 0, hashed or not       (in some sequence's block table)
// Take() prefers free blocks and evicts the least recently released evictable block only when
// none is left, so a cached prefix survives as long as the pool can afford it.
//
// The pool knows nothing about sequences; KvCacheManager keeps the block tables.
// Thread safety: none; one scheduler thread owns the pool.
#ifndef EXPERTMESH_WORKER_KV_KV_BLOCK_POOL_H_
#define EXPERTMESH_WORKER_KV_KV_BLOCK_POOL_H_

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"

namespace expertmesh::kv {

class KvBlockPool {
 public:
  // REQUIRES: num_blocks > 0, block_size > 0 (KvCacheManager::Create validates).
  KvBlockPool(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t block_size() const { return block_size_; }
  // Blocks Take() can return: free plus evictable.
  int32_t NumAvailable() const { return static_cast<int32_t>(free_.size() + lru_.size()); }
  int32_t NumEvictable() const { return static_cast<int32_t>(lru_.size()); }
  int32_t NumHashed() const { return static_cast<int32_t>(by_hash_.size()); }

  int32_t ref_count(int32_t block) const { return blocks_[block].ref_count; }
  bool is_hashed(int32_t block) const { return blocks_[block].hash.has_value(); }
  std::optional<uint64_t> hash(int32_t block) const { return blocks_[block].hash; }

  // Returns a block with ref_count 1 and no hash, for writing. A free block if there is one,
  // else the least recently released evictable block, whose hash is dropped.
  // REQUIRES: NumAvailable() > 0.
  int32_t Take();
  // Adds a reference to a used or evictable block (a prefix-cache hit or a fork).
  void Ref(int32_t block);
  // Drops a reference. At zero, a hashed block becomes evictable (most recently released),
  // an unhashed one free. REQUIRES: ref_count(block) > 0.
  void Unref(int32_t block);

  // The block holding exactly `tokens` under `hash`, if cached (tokens are compared, so a
  // 64-bit collision is a miss, never wrong data).
  std::optional<int32_t> Lookup(uint64_t hash, std::span<const int32_t> tokens) const;
  // Registers a full, used block under `hash`. Returns false (and leaves the block unhashed)
  // when another block already holds that hash: identical content computed twice stays one
  // cache entry. REQUIRES: ref_count(block) > 0, not hashed, tokens.size() == block_size.
  bool Register(int32_t block, uint64_t hash, std::span<const int32_t> tokens);
  // Marks a cached block as just used (a hit), for the stats order.
  void Touch(int32_t block) { blocks_[block].last_use = ++clock_; }

  // Hashes of cached blocks (used or evictable), most recently used first, at most `max`.
  std::vector<uint64_t> CachedHashes(size_t max) const;

  // Checks the state machine above, the free/LRU lists (disjoint, no duplicates) and the hash
  // index. INTERNAL naming the first violation. Reference counts against block tables are
  // checked by KvCacheManager::CheckInvariants.
  absl::Status CheckInvariants() const;

 private:
  struct Block {
    int32_t ref_count = 0;
    std::optional<uint64_t> hash;
    std::vector<int32_t> tokens;  // the block's tokens while hashed (collision check)
    uint64_t last_use = 0;
    std::list<int32_t>::iterator lru_pos;  // valid while evictable
  };

  int32_t block_size_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;  // stack; the initial order makes Take() return 0, 1, 2, ...
  std::list<int32_t> lru_;     // evictable blocks, least recently released first
  absl::flat_hash_map<uint64_t, int32_t> by_hash_;
  uint64_t clock_ = 0;
};

}  // namespace expertmesh::kv

#endif  // EXPERTMESH_WORKER_KV_KV_BLOCK_POOL_H_
