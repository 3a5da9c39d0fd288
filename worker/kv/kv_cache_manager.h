// KvCacheManager: per-sequence block tables over a KvBlockPool, with prefix caching and
// copy-on-write sharing. The scheduler is its only user.
//
// Allocation is transactional: PlanAllocation() is const and says whether the step's tokens
// fit and what it would take; Commit() applies exactly that plan. Between the two nothing else
// may change the manager (Commit fails with FAILED_PRECONDITION on a stale plan).
//
// A sequence's KV lives in block_table(seq): slot p (token position p) is block
// table[p / block_size], row p % block_size. Blocks become shareable through the prefix cache
// only once MarkComputed() says their tokens have been written, so a hit never reads a block a
// concurrent step is still filling.
//
// Thread safety: none; one scheduler thread owns the manager.
#ifndef EXPERTMESH_WORKER_KV_KV_CACHE_MANAGER_H_
#define EXPERTMESH_WORKER_KV_KV_CACHE_MANAGER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/plan/kv_block_hash.h"
#include "worker/kv/kv_block_pool.h"

namespace expertmesh::kv {

using SeqId = int64_t;

struct KvCacheConfig {
  int32_t num_blocks = 0;  // see NumKvBlocksForBudget
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
};

// The longest cached prefix of a prompt, in whole blocks.
struct KvPrefixHit {
  // The parent of block 0 (model::KvRootHash of the request's cache salt); a new sequence
  // hashes its blocks under it, so tenants with different salts never share blocks.
  uint64_t root = model::kRootBlockHash;
  std::vector<int32_t> blocks;
  std::vector<uint64_t> hashes;  // chained hash of each block
  int64_t num_tokens = 0;        // blocks.size() * block_size
};

// What Commit() would do for one sequence. Built only by PlanAllocation().
struct KvAllocationPlan {
  SeqId seq = 0;
  bool new_sequence = false;
  KvPrefixHit prefix;          // adopted on commit (new sequences only)
  int64_t num_new_tokens = 0;  // slots appended after the current (or prefix) tokens
  int32_t blocks_to_take = 0;  // pool blocks needed, including a copy-on-write copy
  bool copy_last_block = false;
  bool fits = false;  // blocks_to_take (+ evictable prefix blocks) are available
  uint64_t generation = 0;
};

// A block copy the executor must perform before the step's KV writes (copy-on-write).
struct KvBlockCopy {
  int32_t src = 0;
  int32_t dst = 0;
  bool operator==(const KvBlockCopy&) const = default;
};

struct KvCacheStats {
  int32_t total_blocks = 0;
  int32_t free_blocks = 0;    // allocatable now: free plus evictable cached blocks
  int32_t cached_blocks = 0;  // blocks in the prefix cache (used or evictable)
  int32_t block_size = 0;
};

class KvCacheManager {
 public:
  // INVALID_ARGUMENT when num_blocks < 1 or block_size < 1.
  static absl::StatusOr<KvCacheManager> Create(const KvCacheConfig& config);

  int32_t block_size() const { return pool_.block_size(); }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  int32_t NumFreeBlocks() const { return pool_.NumAvailable(); }
  int32_t BlocksForTokens(int64_t tokens) const {
    return static_cast<int32_t>((tokens + block_size() - 1) / block_size());
  }

  // The longest cached prefix of `tokens` in full blocks hashed under `root`, leaving at least
  // one token to compute (its logits are needed). Empty (but for `root`) when prefix caching
  // is off. No side effects.
  KvPrefixHit FindCachedPrefix(std::span<const int32_t> tokens,
                               uint64_t root = model::kRootBlockHash) const;

  // Plans room for `num_new_tokens` more tokens of `seq`. A sequence not yet known starts with
  // `prefix` (pass {} for none); a known one must pass an empty prefix. No side effects.
  KvAllocationPlan PlanAllocation(SeqId seq, int64_t num_new_tokens,
                                  const KvPrefixHit& prefix = {}) const;
  // Applies `plan`. Returns the copies to run before this step's KV writes (at most one).
  // FAILED_PRECONDITION when the plan does not fit or the manager changed since it was made.
  absl::StatusOr<std::vector<KvBlockCopy>> Commit(const KvAllocationPlan& plan);

  // Records that the first `num_computed` tokens of `seq` now hold valid KV, with `tokens`
  // the sequence's tokens (at least num_computed of them). Full blocks among them enter the
  // prefix cache. REQUIRES: num_computed <= NumTokens(seq).
  void MarkComputed(SeqId seq, std::span<const int32_t> tokens, int64_t num_computed);

  // Shares all of `parent`'s blocks with a new sequence `child` (for n > 1 sampling); the
  // first write into a shared partial block copies it. INVALID_ARGUMENT for an unknown parent
  // or an existing child.
  absl::Status Fork(SeqId parent, SeqId child);

  // Releases every block of `seq` (tail first, so a cached prefix outlives its suffix in the
  // LRU). Unknown sequences are ignored (abort may race with finish).
  void Free(SeqId seq);

  bool Contains(SeqId seq) const { return seqs_.contains(seq); }
  // REQUIRES: Contains(seq).
  const std::vector<int32_t>& block_table(SeqId seq) const { return seqs_.at(seq).blocks; }
  int64_t NumTokens(SeqId seq) const { return seqs_.at(seq).num_tokens; }

  KvCacheStats Stats() const;
  // Hashes of cached blocks, most recently used first (LoadReport.cached_prefix_hashes).
  std::vector<uint64_t> CachedPrefixHashes(size_t max) const { return pool_.CachedHashes(max); }

  // Pool invariants plus: each block's ref_count equals its appearances in block tables, each
  // table has exactly BlocksForTokens(num_tokens) blocks, hashed prefixes are consistent.
  // INTERNAL naming the first violation.
  absl::Status CheckInvariants() const;

 private:
  struct Sequence {
    uint64_t root = model::kRootBlockHash;  // parent hash of block 0
    std::vector<int32_t> blocks;
    std::vector<uint64_t> hashes;  // chained hashes of the leading computed full blocks
    int64_t num_tokens = 0;        // slots allocated (computed plus scheduled)
  };

  KvCacheManager(const KvCacheConfig& config)
      : pool_(config.num_blocks, config.block_size),
        prefix_caching_(config.enable_prefix_caching) {}

  KvBlockPool pool_;
  bool prefix_caching_;
  absl::flat_hash_map<SeqId, Sequence> seqs_;
  uint64_t generation_ = 0;  // bumped by every mutation; stale plans are refused
};

}  // namespace expertmesh::kv

#endif  // EXPERTMESH_WORKER_KV_KV_CACHE_MANAGER_H_
