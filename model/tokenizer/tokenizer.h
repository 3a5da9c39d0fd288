// A Hugging Face tokenizer for byte-level BPE models (GPT-2, Llama-3, Qwen2, DeepSeek-V3 style),
// loaded from tokenizer.json (+ tokenizer_config.json, generation_config.json). Encode and
// Decode give the same ids and text as the HF `tokenizers` library's
// Tokenizer.encode(text, add_special_tokens).ids and Tokenizer.decode(ids, skip_special_tokens).
//
// Thread safety: a loaded Tokenizer is immutable; all const methods may be called from any
// number of threads at once (scratch state and the BPE word cache are per thread).
#ifndef EXPERTMESH_MODEL_TOKENIZER_TOKENIZER_H_
#define EXPERTMESH_MODEL_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/added_vocabulary.h"
#include "model/tokenizer/bpe_model.h"
#include "model/tokenizer/normalizer.h"
#include "model/tokenizer/post_processor.h"
#include "model/tokenizer/pre_tokenizer.h"
#include "model/tokenizer/tokenizer_config.h"

namespace expertmesh::tokenizer {

// Special-token strings and ids for chat templates and stop conditions. Strings are empty and
// ids -1 when the model has no such token.
struct SpecialTokens {
  std::string bos_token;
  std::string eos_token;
  std::string pad_token;
  std::string unk_token;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  // Every id that ends generation: eos_id plus generation_config.json's eos_token_id list.
  std::vector<int32_t> stop_ids;
};

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json (required), DIR/tokenizer_config.json and
  // DIR/generation_config.json (both optional). NOT_FOUND when tokenizer.json is missing;
  // INVALID_ARGUMENT naming the file and the problem when any file is malformed or uses an
  // unsupported feature.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromDirectory(const std::string& dir);

  // Builds a tokenizer from the text of a tokenizer.json; `source_name` names it in errors.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view source_name,
                                                             TokenizerConfig config = {});

  // Token ids of `text`. With add_special_tokens, the post-processor's special tokens (for
  // example Llama-3's bos) are added. INVALID_ARGUMENT when `text` is not valid UTF-8 (HF takes
  // Rust strings, which cannot hold such text); INTERNAL if a regex fails at match time.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;

  // As Encode, but special added tokens are not matched where they overlap `literal` (sorted,
  // disjoint byte ranges of `text`): text a user wrote inside a rendered chat is tokenized as
  // text even when it spells "<|im_end|>", while the template's own special tokens around it
  // still become special ids. Plain pieces that need normalizing and touch a literal range are
  // normalized without special-token matching.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens,
                                              std::span<const TextRange> literal) const;

  // Text of `ids`: bytes of each token concatenated, invalid UTF-8 replaced by U+FFFD like
  // Rust's from_utf8_lossy. Unknown ids are skipped, as HF does; with skip_special_tokens,
  // added tokens marked special are skipped too.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // Raw bytes that token `id` contributes to Decode (empty for unknown ids).
  std::string_view TokenBytes(int32_t id) const;
  // True when `id` is an added token marked special.
  bool IsSpecial(int32_t id) const;

  // One more than the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(token_bytes_.size()); }
  // Id of a token string (added token content or byte-level vocab entry), or -1.
  int32_t TokenToId(std::string_view token) const;
  // Token string of `id` (as stored in tokenizer.json), or empty for unknown ids.
  std::string_view IdToToken(int32_t id) const;

  int32_t bos_id() const { return special_.bos_id; }
  int32_t eos_id() const { return special_.eos_id; }
  const SpecialTokens& special_tokens() const { return special_; }
  const TokenizerConfig& config() const { return config_; }
  const AddedVocabulary& added_vocabulary() const { return *added_; }
  BpeModel& bpe_model_for_testing() { return *model_; }

 private:
  Tokenizer() = default;
  absl::Status EncodePlain(std::string_view text, bool match_special,
                           std::vector<int32_t>* ids) const;
  absl::Status EncodeNormalized(std::string_view text, std::vector<int32_t>* ids) const;
  void ResolveSpecialTokens();

  std::string source_;
  std::unique_ptr<Normalizer> normalizer_;  // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<AddedVocabulary> added_;
  PostProcessor post_processor_;
  std::vector<std::string> token_bytes_;  // id -> decoded bytes
  std::vector<uint8_t> special_flag_;     // id -> 1 for special added tokens
  TokenizerConfig config_;
  SpecialTokens special_;
};

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_TOKENIZER_H_
