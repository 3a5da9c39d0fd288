// tokenizer.json "added_tokens": strings matched verbatim in the input before pre-tokenization
// (leftmost-longest, like HF's Aho-Corasick matcher), honouring single_word, lstrip, rstrip
// and normalized. Special tokens are the ones skipped by Decode(skip_special_tokens=true).
#ifndef EXPERTMESH_MODEL_TOKENIZER_ADDED_VOCABULARY_H_
#define EXPERTMESH_MODEL_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/normalizer.h"
#include "model/tokenizer/regex.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// Bytes [begin, end) of an input.
struct TextRange {
  size_t begin = 0;
  size_t end = 0;
};

// A piece of input: either plain text (token_id < 0) or one matched added token.
struct Segment {
  std::string_view text;
  int32_t token_id = -1;
};

class AddedVocabulary {
 public:
  // Parses the "added_tokens" array (null or missing means none). `normalizer` (may be null)
  // normalizes the content of tokens with normalized=true, as HF does. INVALID_ARGUMENT for a
  // malformed entry.
  static absl::StatusOr<std::unique_ptr<AddedVocabulary>> FromJson(const nlohmann::json& tokens,
                                                                   const Normalizer* normalizer);

  // Splits `text` on tokens whose normalized flag equals `normalized`; appends the segments
  // (views into `text`) in order. Plain segments are never empty. A special token whose match
  // overlaps one of `literal` (sorted, disjoint) stays plain text there, as HF's
  // split_special_tokens does for a whole input.
  absl::Status Split(std::string_view text, bool normalized, std::vector<Segment>* out,
                     std::span<const TextRange> literal = {}) const;

  // Where `text` spells a special token's content (raw or normalized form), ignoring
  // single_word/lstrip/rstrip: sorted, disjoint ranges, found leftmost-longest in one pass
  // per form. Linear in the text.
  std::vector<TextRange> FindSpecialSpellings(std::string_view text) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // The added token with this id, or nullptr.
  const AddedToken* FindById(int32_t id) const;
  // The added token with this content, or nullptr.
  const AddedToken* FindByContent(std::string_view content) const;
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie over token contents; matching is leftmost-longest.
  struct Matcher {
    std::vector<int32_t> terminal;                 // node -> index into tokens_, or -1
    absl::flat_hash_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> child node
    bool first_byte[256] = {};
    void Add(std::string_view pattern, int32_t token_index);
    // Longest match starting at `pos`: its length and token index, or {0, -1}.
    std::pair<size_t, int32_t> LongestAt(std::string_view text, size_t pos) const;
  };
  AddedVocabulary();

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  Matcher raw_matcher_;
  Matcher normalized_matcher_;
  std::unique_ptr<Regex> word_char_;      // \w, for single_word
  std::unique_ptr<Regex> space_char_;     // ^\s$, for lstrip
  std::unique_ptr<Regex> leading_space_;  // ^\s+, for rstrip
};

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_ADDED_VOCABULARY_H_
