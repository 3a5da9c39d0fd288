// Compiled grammars by GBNF text, so requests with the same constraint (the same JSON schema,
// the same tool set) compile once. Thread-safe; bounded: the least recently used entry is
// evicted beyond `capacity`.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_GRAMMAR_CACHE_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_GRAMMAR_CACHE_H_

#include <cstddef>
#include <list>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/token_vocabulary.h"

namespace expertmesh::grammar {

class GrammarCache {
 public:
  // REQUIRES: vocab is not null, capacity >= 1. Every compile runs under `limits`.
  GrammarCache(std::shared_ptr<const TokenVocabulary> vocab, size_t capacity,
               const CompileLimits& limits = {});

  // The grammar of `gbnf_text` (ParseGbnf, then CompiledGrammar::Compile), compiled once per
  // text while it stays cached. INVALID_ARGUMENT from parsing or validation (not cached: they
  // cost little); RESOURCE_EXHAUSTED past the compile limits, cached like a grammar, so a client
  // repeating a grammar too large to compile costs its seconds of work once. Two threads asking
  // for the same new text may both compile it; one result is kept.
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Get(std::string_view gbnf_text);

  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  using Lru =
      std::list<std::pair<std::string, absl::StatusOr<std::shared_ptr<const CompiledGrammar>>>>;

  const std::shared_ptr<const TokenVocabulary> vocab_;
  const size_t capacity_;
  const CompileLimits limits_;
  mutable absl::Mutex mu_;
  Lru lru_ ABSL_GUARDED_BY(mu_);  // most recent first
  absl::flat_hash_map<std::string_view, Lru::iterator> index_ ABSL_GUARDED_BY(mu_);
};

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_GRAMMAR_CACHE_H_
