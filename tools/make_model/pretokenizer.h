// Splits text into pre-tokens with a Hugging Face `Split` regex (behavior Isolated): every match
// is a pre-token and so is every stretch of text between matches. PCRE2 with UTF + UCP and JIT
// reproduces the Python `regex` module that the reference tokenizers use.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_PRETOKENIZER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_PRETOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::make_model {

// The Llama-3 pattern (digits in runs of up to three) and the Qwen2 pattern (single digits).
extern const char kLlama3Pattern[];
extern const char kQwen2Pattern[];

class PreTokenizer {
 public:
  // Compiles `pattern`. INVALID_ARGUMENT with PCRE2's message and offset when it does not compile.
  static absl::StatusOr<PreTokenizer> Create(std::string_view pattern);

  // The pre-tokens of `text`, in order; their concatenation is `text`. INVALID_ARGUMENT when
  // `text` is not valid UTF-8.
  absl::StatusOr<std::vector<std::string_view>> Split(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  PreTokenizer(std::string pattern, std::shared_ptr<const Compiled> compiled)
      : pattern_(std::move(pattern)), compiled_(std::move(compiled)) {}

  std::string pattern_;
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_PRETOKENIZER_H_
