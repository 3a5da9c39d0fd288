// A tokenizer's vocabulary as the grammar engine sees it: the bytes of every token, which ids are
// special (never produced by a grammar) and which end generation (allowed where the grammar may
// end), plus a byte trie over the ordinary tokens that compile and closing walks descend.
//
// Immutable after Create; shared (std::shared_ptr<const>) by every CompiledGrammar built on it
// and safe to use from any number of threads.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_TOKEN_VOCABULARY_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_TOKEN_VOCABULARY_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/tokenizer.h"

namespace expertmesh::grammar {

class TokenVocabulary {
 public:
  // One node of the byte trie. Children of a node are contiguous and sorted by byte, so a walk
  // that fails on a node skips its whole subtree by jumping to `subtree_end`.
  struct TrieNode {
    int32_t tokens_begin = 0;  // the tokens spelled by the path to this node:
    int32_t tokens_end = 0;    //   sorted_text_tokens()[tokens_begin, tokens_end)
    int32_t subtree_end = 0;   // index one past this node's subtree (nodes are in DFS order)
    int32_t depth = 0;         // bytes from the root to this node
    int32_t max_below = 0;     // bytes of the longest token below this node, past this node
    uint8_t byte = 0;          // the byte on the edge into this node (unused for the root)
  };

  // token_bytes[i]: the bytes token i contributes to decoded text. special[i]: i is a special
  // added token (never allowed by a grammar; the same length as token_bytes). eos_ids: the ids
  // that end generation (allowed exactly where the grammar may end; each < token_bytes.size()).
  // vocab_size >= token_bytes.size(): the model's logit rows; ids past the tokenizer (padding
  // rows of lm_head) are never allowed. Ordinary tokens with no bytes are never allowed either.
  // INVALID_ARGUMENT when the sizes disagree or an EOS id is out of range.
  static absl::StatusOr<std::shared_ptr<const TokenVocabulary>> Create(
      std::vector<std::string> token_bytes, std::vector<bool> special, std::vector<int32_t> eos_ids,
      int32_t vocab_size);

  // The vocabulary of `t` (TokenBytes / IsSpecial of every id below t.vocab_size()).
  static absl::StatusOr<std::shared_ptr<const TokenVocabulary>> FromTokenizer(
      const tokenizer::Tokenizer& t, std::span<const int32_t> eos_ids, int32_t vocab_size);

  // Logit rows (the mask's length in bits).
  int32_t size() const { return vocab_size_; }
  // 32-bit words a token bitmask needs: ceil(size() / 32).
  int32_t mask_words() const { return (vocab_size_ + 31) / 32; }

  // Ids the tokenizer knows (token_bytes.size()); ids in [tokenizer_size(), size()) are padding.
  int32_t tokenizer_size() const { return static_cast<int32_t>(token_bytes_.size()); }
  std::string_view token_bytes(int32_t id) const { return token_bytes_[id]; }
  bool is_special(int32_t id) const { return special_[id]; }
  bool is_eos(int32_t id) const;
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  // True for the tokens a grammar may produce as text: known, not special, not EOS, non-empty.
  bool is_text(int32_t id) const;

  // The trie over the text tokens, in DFS order; node 0 is the root (the empty prefix).
  const std::vector<TrieNode>& trie() const { return trie_; }
  // Bitmask (mask_words() words) of the text tokens.
  const std::vector<uint32_t>& text_bits() const { return text_bits_; }
  // Text token ids sorted by their bytes (the order the trie lists them in).
  const std::vector<int32_t>& sorted_text_tokens() const { return sorted_; }

 private:
  TokenVocabulary() = default;
  void BuildTrie();

  std::vector<std::string> token_bytes_;
  std::vector<bool> special_;
  std::vector<int32_t> eos_ids_;  // sorted, unique
  int32_t vocab_size_ = 0;
  std::vector<TrieNode> trie_;
  std::vector<int32_t> sorted_;
  std::vector<uint32_t> text_bits_;
};

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_TOKEN_VOCABULARY_H_
