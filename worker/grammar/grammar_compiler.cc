#include "worker/grammar/grammar_compiler.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "model/tokenizer/tokenizer.h"

namespace expertmesh::worker {

absl::StatusOr<std::unique_ptr<GrammarCompiler>> GrammarCompiler::ForModel(
    const std::string& model_dir, const model::ModelConfig& config, size_t cache_capacity) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::Tokenizer::LoadFromDirectory(model_dir);
  if (absl::IsNotFound(tok.status())) {
    std::unique_ptr<GrammarCompiler> none(new GrammarCompiler(absl::StrCat(
        "the worker's model directory ", model_dir,
        " has no tokenizer.json, which constrained decoding needs to map the grammar to tokens")));
    EM_LOG_WARN("worker: requests with a grammar will be refused: {}", none->unavailable_reason());
    return none;
  }
  if (!tok.ok()) return tok.status();
  std::vector<int32_t> eos;
  for (int64_t id : config.eos_token_ids) {
    if (id >= 0 && id < config.vocab_size) eos.push_back(static_cast<int32_t>(id));
  }
  absl::StatusOr<std::shared_ptr<const grammar::TokenVocabulary>> vocab =
      grammar::TokenVocabulary::FromTokenizer(**tok, eos, static_cast<int32_t>(config.vocab_size));
  if (!vocab.ok()) {
    std::unique_ptr<GrammarCompiler> none(new GrammarCompiler(
        absl::StrCat("the tokenizer in ", model_dir, " does not fit the model's vocabulary of ",
                     config.vocab_size, " tokens: ", vocab.status().message())));
    EM_LOG_WARN("worker: requests with a grammar will be refused: {}", none->unavailable_reason());
    return none;
  }
  EM_LOG_INFO("worker: grammar vocabulary of {} tokens ({} from the tokenizer) built in {:.0f} ms",
              (*vocab)->size(), (*vocab)->tokenizer_size(),
              absl::ToDoubleMilliseconds(absl::Now() - start));
  return std::make_unique<GrammarCompiler>(*std::move(vocab), cache_capacity);
}

GrammarCompiler::GrammarCompiler(std::shared_ptr<const grammar::TokenVocabulary> vocab,
                                 size_t cache_capacity)
    : cache_(std::make_unique<grammar::GrammarCache>(std::move(vocab), cache_capacity)) {}

absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> GrammarCompiler::Compile(
    std::string_view gbnf) const {
  if (cache_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: this worker cannot decode with a grammar: ", unavailable_reason_));
  }
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> compiled = cache_->Get(gbnf);
  if (!compiled.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("grammar: ", compiled.status().message()));
  }
  return compiled;
}

}  // namespace expertmesh::worker
