#include "router/grammar_text_cache.h"

namespace expertmesh::router {

absl::StatusOr<std::string> GrammarTextCache::GetOrCompile(
    const std::string& key, const std::function<absl::StatusOr<std::string>()>& compile) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      return it->second->value;
    }
  }
  absl::StatusOr<std::string> value = compile();
  absl::MutexLock lock(&mu_);
  if (!index_.contains(key)) InsertLocked(key, value);
  return value;
}

void GrammarTextCache::InsertLocked(std::string key, absl::StatusOr<std::string> value) {
  const size_t bytes =
      key.size() + (value.ok() ? value->size() : value.status().message().size()) + 64;
  if (bytes > max_bytes_ || max_entries_ == 0) return;  // never worth evicting everything for
  while (!lru_.empty() && (lru_.size() + 1 > max_entries_ || bytes_ + bytes > max_bytes_)) {
    bytes_ -= lru_.back().bytes;
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{std::move(key), std::move(value), bytes});
  index_[lru_.front().key] = lru_.begin();
  bytes_ += bytes;
}

size_t GrammarTextCache::size() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

size_t GrammarTextCache::hits() const {
  absl::MutexLock lock(&mu_);
  return hits_;
}

}  // namespace expertmesh::router
