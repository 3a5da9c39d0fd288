#include "worker/kv/kv_block_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace expertmesh::kv {

KvBlockPool::KvBlockPool(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size), blocks_(num_blocks) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int32_t KvBlockPool::Take() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else {
    block = lru_.front();
    lru_.pop_front();
    Block& evicted = blocks_[block];
    by_hash_.erase(*evicted.hash);
    evicted.hash.reset();
    evicted.tokens.clear();
  }
  blocks_[block].ref_count = 1;
  blocks_[block].last_use = ++clock_;
  return block;
}

void KvBlockPool::Ref(int32_t block) {
  Block& b = blocks_[block];
  if (b.ref_count == 0) lru_.erase(b.lru_pos);  // an evictable block comes back into use
  ++b.ref_count;
  b.last_use = ++clock_;
}

void KvBlockPool::Unref(int32_t block) {
  Block& b = blocks_[block];
  if (--b.ref_count > 0) return;
  if (b.hash.has_value()) {
    b.lru_pos = lru_.insert(lru_.end(), block);
  } else {
    free_.push_back(block);
  }
}

std::optional<int32_t> KvBlockPool::Lookup(uint64_t hash, std::span<const int32_t> tokens) const {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  const Block& b = blocks_[it->second];
  if (!std::equal(b.tokens.begin(), b.tokens.end(), tokens.begin(), tokens.end())) {
    return std::nullopt;
  }
  return it->second;
}

bool KvBlockPool::Register(int32_t block, uint64_t hash, std::span<const int32_t> tokens) {
  if (!by_hash_.try_emplace(hash, block).second) return false;
  Block& b = blocks_[block];
  b.hash = hash;
  b.tokens.assign(tokens.begin(), tokens.end());
  return true;
}

std::vector<uint64_t> KvBlockPool::CachedHashes(size_t max) const {
  std::vector<std::pair<uint64_t, uint64_t>> by_use;  // (last_use, hash)
  by_use.reserve(by_hash_.size());
  for (const auto& [hash, block] : by_hash_) by_use.emplace_back(blocks_[block].last_use, hash);
  std::sort(by_use.begin(), by_use.end(), std::greater<>());
  std::vector<uint64_t> hashes;
  for (size_t i = 0; i < by_use.size() && i < max; ++i) hashes.push_back(by_use[i].second);
  return hashes;
}

absl::Status KvBlockPool::CheckInvariants() const {
  std::vector<int> listed(blocks_.size(), 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= num_blocks()) return absl::InternalError(absl::StrCat("free list: bad ", b));
    if (listed[b]++) return absl::InternalError(absl::StrCat("block ", b, " listed twice"));
    if (blocks_[b].ref_count != 0 || blocks_[b].hash.has_value()) {
      return absl::InternalError(absl::StrCat("free block ", b, " is referenced or hashed"));
    }
  }
  for (int32_t b : lru_) {
    if (b < 0 || b >= num_blocks()) return absl::InternalError(absl::StrCat("lru list: bad ", b));
    if (listed[b]++) return absl::InternalError(absl::StrCat("block ", b, " listed twice"));
    if (blocks_[b].ref_count != 0 || !blocks_[b].hash.has_value()) {
      return absl::InternalError(absl::StrCat("evictable block ", b, " is used or unhashed"));
    }
  }
  for (int32_t b = 0; b < num_blocks(); ++b) {
    const Block& block = blocks_[b];
    if (block.ref_count < 0) return absl::InternalError(absl::StrCat("block ", b, " ref < 0"));
    if (block.ref_count == 0 && !listed[b]) {
      return absl::InternalError(absl::StrCat("unreferenced block ", b, " is in no list (leak)"));
    }
    if (block.hash.has_value()) {
      auto it = by_hash_.find(*block.hash);
      if (it == by_hash_.end() || it->second != b) {
        return absl::InternalError(absl::StrCat("hashed block ", b, " missing from the index"));
      }
      if (static_cast<int32_t>(block.tokens.size()) != block_size_) {
        return absl::InternalError(absl::StrCat("hashed block ", b, " keeps wrong token count"));
      }
    }
  }
  for (const auto& [hash, b] : by_hash_) {
    if (b < 0 || b >= num_blocks() || blocks_[b].hash != hash) {
      return absl::InternalError(absl::StrCat("hash index entry ", hash, " -> ", b, " is stale"));
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::kv
