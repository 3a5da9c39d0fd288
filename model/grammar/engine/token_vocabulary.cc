#include "model/grammar/engine/token_vocabulary.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace expertmesh::grammar {

absl::StatusOr<std::shared_ptr<const TokenVocabulary>> TokenVocabulary::Create(
    std::vector<std::string> token_bytes, std::vector<bool> special, std::vector<int32_t> eos_ids,
    int32_t vocab_size) {
  if (special.size() != token_bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("token vocabulary: ", special.size(),
                                                   " special flags for ", token_bytes.size(),
                                                   " tokens"));
  }
  if (vocab_size < 0 || static_cast<size_t>(vocab_size) < token_bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("token vocabulary: vocab_size ", vocab_size,
                                                   " is below the tokenizer's ", token_bytes.size(),
                                                   " tokens"));
  }
  for (int32_t id : eos_ids) {
    if (id < 0 || static_cast<size_t>(id) >= token_bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("token vocabulary: EOS id ", id,
                                                     " is outside the tokenizer's ",
                                                     token_bytes.size(), " tokens"));
    }
  }
  std::sort(eos_ids.begin(), eos_ids.end());
  eos_ids.erase(std::unique(eos_ids.begin(), eos_ids.end()), eos_ids.end());
  std::shared_ptr<TokenVocabulary> v(new TokenVocabulary());
  v->token_bytes_ = std::move(token_bytes);
  v->special_ = std::move(special);
  v->eos_ids_ = std::move(eos_ids);
  v->vocab_size_ = vocab_size;
  v->BuildTrie();
  return std::shared_ptr<const TokenVocabulary>(std::move(v));
}

absl::StatusOr<std::shared_ptr<const TokenVocabulary>> TokenVocabulary::FromTokenizer(
    const tokenizer::Tokenizer& t, std::span<const int32_t> eos_ids, int32_t vocab_size) {
  const int32_t n = t.vocab_size();
  std::vector<std::string> bytes(n);
  std::vector<bool> special(n);
  for (int32_t id = 0; id < n; ++id) {
    bytes[id] = std::string(t.TokenBytes(id));
    special[id] = t.IsSpecial(id);
  }
  return Create(std::move(bytes), std::move(special),
                std::vector<int32_t>(eos_ids.begin(), eos_ids.end()), vocab_size);
}

bool TokenVocabulary::is_eos(int32_t id) const {
  return std::binary_search(eos_ids_.begin(), eos_ids_.end(), id);
}

bool TokenVocabulary::is_text(int32_t id) const {
  return id >= 0 && id < tokenizer_size() && !special_[id] && !token_bytes_[id].empty() &&
         !is_eos(id);
}

void TokenVocabulary::BuildTrie() {
  sorted_.clear();
  text_bits_.assign(mask_words(), 0);
  for (int32_t id = 0; id < tokenizer_size(); ++id) {
    if (!is_text(id)) continue;
    sorted_.push_back(id);
    text_bits_[id >> 5] |= uint32_t{1} << (id & 31);
  }
  std::stable_sort(sorted_.begin(), sorted_.end(),
                   [this](int32_t a, int32_t b) { return token_bytes_[a] < token_bytes_[b]; });
  trie_.assign(1, TrieNode{});
  // path[d]: the node at depth d on the path to the previous token.
  std::vector<int32_t> path{0};
  auto close_deepest = [&]() {
    const int32_t done = path.back();
    path.pop_back();
    trie_[done].subtree_end = static_cast<int32_t>(trie_.size());
    TrieNode& parent = trie_[path.back()];
    parent.max_below = std::max(parent.max_below, trie_[done].max_below + 1);
  };
  std::string_view prev;
  for (size_t i = 0; i < sorted_.size(); ++i) {
    const std::string_view s = token_bytes_[sorted_[i]];
    size_t lcp = 0;
    while (lcp < s.size() && lcp < prev.size() && s[lcp] == prev[lcp]) ++lcp;
    while (path.size() > lcp + 1) close_deepest();
    for (size_t d = lcp; d < s.size(); ++d) {
      TrieNode node;
      node.byte = static_cast<uint8_t>(s[d]);
      node.depth = static_cast<int32_t>(d + 1);
      node.tokens_begin = node.tokens_end = static_cast<int32_t>(i);
      trie_.push_back(node);
      path.push_back(static_cast<int32_t>(trie_.size() - 1));
    }
    TrieNode& at = trie_[path.back()];
    if (at.tokens_begin == at.tokens_end) at.tokens_begin = static_cast<int32_t>(i);
    at.tokens_end = static_cast<int32_t>(i + 1);
    prev = s;
  }
  while (path.size() > 1) close_deepest();
  trie_[0].subtree_end = static_cast<int32_t>(trie_.size());
}

}  // namespace expertmesh::grammar
