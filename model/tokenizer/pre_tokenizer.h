// tokenizer.json "pre_tokenizer" for byte-level BPE: splits normalized text into words that
// BPE encodes independently. Supported: Split (Regex/String pattern; behaviors Removed, Isolated,
// MergedWithPrevious, MergedWithNext, Contiguous; invert), ByteLevel (add_prefix_space,
// use_regex with the GPT-2 pattern), and a Sequence of those with ByteLevel last.
#ifndef EXPERTMESH_MODEL_TOKENIZER_PRE_TOKENIZER_H_
#define EXPERTMESH_MODEL_TOKENIZER_PRE_TOKENIZER_H_

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/regex.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  // Builds the pre-tokenizer described by `spec`. INVALID_ARGUMENT for unknown types,
  // malformed fields, regexes that do not compile, or a pipeline without a final ByteLevel
  // step (only byte-level BPE is supported).
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json& spec);

  // Splits `text` into non-empty words, left to right. Words view `text` or strings appended to
  // `storage` (a deque, so earlier views stay valid). REQUIRES: `text` is valid UTF-8.
  absl::Status Split(std::string_view text, std::vector<std::string_view>* words,
                     std::deque<std::string>* storage) const;

 private:
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind;
    std::unique_ptr<Regex> regex;  // kSplit; kByteLevel when use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  static absl::Status AddSteps(const nlohmann::json& spec, std::vector<Step>* steps);
  absl::Status ApplyRegex(const Step& step, std::string_view piece,
                          std::vector<std::string_view>* out) const;

  std::vector<Step> steps_;
};

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_PRE_TOKENIZER_H_
