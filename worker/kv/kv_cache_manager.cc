#include "worker/kv/kv_cache_manager.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "model/plan/kv_block_hash.h"

namespace expertmesh::kv {

absl::StatusOr<KvCacheManager> KvCacheManager::Create(const KvCacheConfig& config) {
  if (config.num_blocks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache: num_blocks must be >= 1, got ", config.num_blocks));
  }
  if (config.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache: block_size must be >= 1, got ", config.block_size));
  }
  return KvCacheManager(config);
}

KvPrefixHit KvCacheManager::FindCachedPrefix(std::span<const int32_t> tokens, uint64_t root) const {
  KvPrefixHit hit;
  hit.root = root;
  if (!prefix_caching_ || tokens.empty()) return hit;
  const int64_t bs = block_size();
  // At least the last token is recomputed: the step needs its logits.
  const int64_t max_blocks = (static_cast<int64_t>(tokens.size()) - 1) / bs;
  uint64_t parent = root;
  for (int64_t i = 0; i < max_blocks; ++i) {
    auto block_tokens = tokens.subspan(i * bs, bs);
    const uint64_t hash = model::HashKvBlock(parent, block_tokens);
    std::optional<int32_t> block = pool_.Lookup(hash, block_tokens);
    if (!block.has_value()) break;
    hit.blocks.push_back(*block);
    hit.hashes.push_back(hash);
    parent = hash;
  }
  hit.num_tokens = static_cast<int64_t>(hit.blocks.size()) * bs;
  return hit;
}

KvAllocationPlan KvCacheManager::PlanAllocation(SeqId seq, int64_t num_new_tokens,
                                                const KvPrefixHit& prefix) const {
  KvAllocationPlan plan;
  plan.seq = seq;
  plan.num_new_tokens = num_new_tokens;
  plan.generation = generation_;
  int64_t current_tokens;
  int32_t current_blocks;
  int32_t evictable_hits = 0;  // adopting these takes them out of the available count
  auto it = seqs_.find(seq);
  if (it != seqs_.end()) {
    const Sequence& s = it->second;
    current_tokens = s.num_tokens;
    current_blocks = static_cast<int32_t>(s.blocks.size());
    // Writing into a partial last block that another sequence shares must copy it first.
    plan.copy_last_block = num_new_tokens > 0 && current_tokens % block_size() != 0 &&
                           pool_.ref_count(s.blocks.back()) > 1;
  } else {
    plan.new_sequence = true;
    plan.prefix = prefix;
    current_tokens = prefix.num_tokens;
    current_blocks = static_cast<int32_t>(prefix.blocks.size());
    for (int32_t b : prefix.blocks) evictable_hits += pool_.ref_count(b) == 0 ? 1 : 0;
  }
  plan.blocks_to_take = BlocksForTokens(current_tokens + num_new_tokens) - current_blocks +
                        (plan.copy_last_block ? 1 : 0);
  plan.fits = plan.blocks_to_take + evictable_hits <= pool_.NumAvailable();
  return plan;
}

absl::StatusOr<std::vector<KvBlockCopy>> KvCacheManager::Commit(const KvAllocationPlan& plan) {
  if (plan.generation != generation_) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV cache: stale allocation plan for sequence ", plan.seq));
  }
  if (!plan.fits) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV cache: plan for sequence ", plan.seq, " needs ", plan.blocks_to_take,
                     " blocks, only ", pool_.NumAvailable(), " available"));
  }
  for (size_t i = 0; i < plan.prefix.blocks.size(); ++i) {
    if (pool_.hash(plan.prefix.blocks[i]) != plan.prefix.hashes[i]) {
      return absl::FailedPreconditionError(
          absl::StrCat("KV cache: prefix hit for sequence ", plan.seq, " is stale"));
    }
  }
  ++generation_;
  Sequence& s = seqs_[plan.seq];
  if (plan.new_sequence) {
    // Adopt the hit before taking new blocks, so Take() cannot evict it.
    for (int32_t b : plan.prefix.blocks) {
      pool_.Ref(b);
      pool_.Touch(b);
    }
    s.root = plan.prefix.root;
    s.blocks = plan.prefix.blocks;
    s.hashes = plan.prefix.hashes;
    s.num_tokens = plan.prefix.num_tokens;
  }
  std::vector<KvBlockCopy> copies;
  if (plan.copy_last_block) {
    const int32_t shared = s.blocks.back();
    const int32_t copy = pool_.Take();
    pool_.Unref(shared);
    s.blocks.back() = copy;
    copies.push_back({shared, copy});
  }
  s.num_tokens += plan.num_new_tokens;
  while (static_cast<int32_t>(s.blocks.size()) < BlocksForTokens(s.num_tokens)) {
    s.blocks.push_back(pool_.Take());
  }
  return copies;
}

void KvCacheManager::MarkComputed(SeqId seq, std::span<const int32_t> tokens,
                                  int64_t num_computed) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  Sequence& s = it->second;
  const int64_t bs = block_size();
  const size_t full_blocks = static_cast<size_t>(num_computed / bs);
  ++generation_;
  while (s.hashes.size() < full_blocks) {
    const size_t i = s.hashes.size();
    auto block_tokens = tokens.subspan(i * bs, bs);
    const uint64_t parent = i == 0 ? s.root : s.hashes[i - 1];
    const uint64_t hash = model::HashKvBlock(parent, block_tokens);
    s.hashes.push_back(hash);
    if (prefix_caching_ && !pool_.is_hashed(s.blocks[i])) {
      pool_.Register(s.blocks[i], hash, block_tokens);
    }
  }
}

absl::Status KvCacheManager::Fork(SeqId parent, SeqId child) {
  auto it = seqs_.find(parent);
  if (it == seqs_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: fork of unknown sequence ", parent));
  }
  if (seqs_.contains(child)) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: fork into existing ", child));
  }
  ++generation_;
  Sequence copy = it->second;
  for (int32_t b : copy.blocks) pool_.Ref(b);
  seqs_.emplace(child, std::move(copy));
  return absl::OkStatus();
}

void KvCacheManager::Free(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  ++generation_;
  const std::vector<int32_t>& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) pool_.Unref(*b);
  seqs_.erase(it);
}

KvCacheStats KvCacheManager::Stats() const {
  return {.total_blocks = pool_.num_blocks(),
          .free_blocks = pool_.NumAvailable(),
          .cached_blocks = pool_.NumHashed(),
          .block_size = block_size()};
}

absl::Status KvCacheManager::CheckInvariants() const {
  if (absl::Status s = pool_.CheckInvariants(); !s.ok()) return s;
  std::vector<int32_t> refs(pool_.num_blocks(), 0);
  for (const auto& [id, s] : seqs_) {
    if (static_cast<int32_t>(s.blocks.size()) != BlocksForTokens(s.num_tokens)) {
      return absl::InternalError(absl::StrCat("sequence ", id, " has ", s.blocks.size(),
                                              " blocks for ", s.num_tokens, " tokens"));
    }
    if (static_cast<int64_t>(s.hashes.size()) > s.num_tokens / block_size()) {
      return absl::InternalError(absl::StrCat("sequence ", id, " hashes a partial block"));
    }
    for (size_t i = 0; i < s.blocks.size(); ++i) {
      const int32_t b = s.blocks[i];
      if (b < 0 || b >= pool_.num_blocks()) {
        return absl::InternalError(absl::StrCat("sequence ", id, " holds bad block ", b));
      }
      ++refs[b];
      std::optional<uint64_t> h = pool_.hash(b);
      if (h.has_value() && i < s.hashes.size() && s.hashes[i] != *h) {
        return absl::InternalError(
            absl::StrCat("sequence ", id, " block ", i, " is cached under another prefix"));
      }
    }
  }
  for (int32_t b = 0; b < pool_.num_blocks(); ++b) {
    if (refs[b] != pool_.ref_count(b)) {
      return absl::InternalError(absl::StrCat("block ", b, " ref_count ", pool_.ref_count(b),
                                              " but ", refs[b], " block-table references"));
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::kv
