// GrammarCompiler: a worker's side of constrained decoding before the engine: the model's
// vocabulary as the grammar engine sees it, built once at startup from the model directory's
// tokenizer, and a bounded cache of compiled grammars keyed by GBNF text (so the requests of one
// JSON schema or tool set compile once).
//
// Compile() is meant for the thread that submits a request (the RPC handler): compiling takes
// milliseconds to tens of milliseconds and must never stall the engine loop's steps.
//
// Thread safety: Compile() may be called from any number of threads.
#ifndef EXPERTMESH_WORKER_GRAMMAR_GRAMMAR_COMPILER_H_
#define EXPERTMESH_WORKER_GRAMMAR_GRAMMAR_COMPILER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/config/model_config.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/grammar_cache.h"
#include "model/grammar/engine/token_vocabulary.h"

namespace expertmesh::worker {

class GrammarCompiler {
 public:
  // Compiled grammars kept by default (each holds its automaton and token tables).
  static constexpr size_t kDefaultCacheCapacity = 128;

  // The vocabulary of `model_dir`'s tokenizer (Tokenizer::LoadFromDirectory) with the eos ids of
  // `config` and its vocab_size (which may exceed the tokenizer's: padding rows of lm_head are
  // never allowed). A directory without a tokenizer, or one whose tokenizer does not fit the
  // model, gives a compiler that refuses every grammar and says why (the worker serves the
  // model all the same); other errors (a malformed tokenizer) are returned.
  static absl::StatusOr<std::unique_ptr<GrammarCompiler>> ForModel(
      const std::string& model_dir, const model::ModelConfig& config,
      size_t cache_capacity = kDefaultCacheCapacity);

  // Over an existing vocabulary. REQUIRES: vocab not null, cache_capacity >= 1.
  GrammarCompiler(std::shared_ptr<const grammar::TokenVocabulary> vocab, size_t cache_capacity);

  // The compiled grammar of `gbnf` (through the cache). INVALID_ARGUMENT naming the problem when
  // it does not parse or compile, or when this worker has no vocabulary for grammars.
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> Compile(
      std::string_view gbnf) const;

  // False when every grammar is refused; unavailable_reason() says why.
  bool enabled() const { return cache_ != nullptr; }
  const std::string& unavailable_reason() const { return unavailable_reason_; }

 private:
  explicit GrammarCompiler(std::string unavailable_reason)
      : unavailable_reason_(std::move(unavailable_reason)) {}

  std::unique_ptr<grammar::GrammarCache> cache_;
  std::string unavailable_reason_;
};

}  // namespace expertmesh::worker

#endif  // EXPERTMESH_WORKER_GRAMMAR_GRAMMAR_COMPILER_H_
