#include "model/grammar/engine/grammar_cache.h"

#include <utility>

#include "model/grammar/gbnf.h"

namespace expertmesh::grammar {

GrammarCache::GrammarCache(std::shared_ptr<const TokenVocabulary> vocab, size_t capacity,
                           const CompileLimits& limits)
    : vocab_(std::move(vocab)), capacity_(capacity < 1 ? 1 : capacity), limits_(limits) {}

size_t GrammarCache::size() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCache::Get(
    std::string_view gbnf_text) {
  {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(gbnf_text);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  // Compile outside the lock: compiling takes milliseconds to seconds and other grammars'
  // lookups must not wait for it.
  absl::StatusOr<Grammar> grammar = ParseGbnf(gbnf_text);
  if (!grammar.ok()) return grammar.status();
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> compiled =
      CompiledGrammar::Compile(*grammar, vocab_, limits_);
  if (!compiled.ok() && compiled.status().code() != absl::StatusCode::kResourceExhausted) {
    return compiled.status();
  }

  absl::MutexLock lock(&mu_);
  auto it = index_.find(gbnf_text);
  if (it != index_.end()) {  // another thread compiled it meanwhile: keep one
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  lru_.emplace_front(std::string(gbnf_text), compiled);
  index_.emplace(lru_.front().first, lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return compiled;
}

}  // namespace expertmesh::grammar
