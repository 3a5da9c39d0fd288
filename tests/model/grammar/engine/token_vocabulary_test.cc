#include "model/grammar/engine/token_vocabulary.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/model/grammar/engine/test_grammars.h"

namespace expertmesh::grammar {
namespace {

TEST(TokenVocabularyTest, RefusesInconsistentSizes) {
  EXPECT_FALSE(TokenVocabulary::Create({"a", "b"}, {false}, {}, 2).ok());
  EXPECT_FALSE(TokenVocabulary::Create({"a", "b"}, {false, false}, {}, 1).ok());
  EXPECT_FALSE(TokenVocabulary::Create({"a", "b"}, {false, false}, {2}, 8).ok());
  EXPECT_FALSE(TokenVocabulary::Create({"a", "b"}, {false, false}, {-1}, 8).ok());
  auto v = TokenVocabulary::Create({"a", "b"}, {false, true}, {1}, 33);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ((*v)->size(), 33);
  EXPECT_EQ((*v)->mask_words(), 2);
  EXPECT_TRUE((*v)->is_text(0));
  EXPECT_FALSE((*v)->is_text(1));
  EXPECT_TRUE((*v)->is_eos(1));
  EXPECT_FALSE((*v)->is_text(2));
}

// The trie lists every text token exactly once, under the path of its bytes, in byte order.
TEST(TokenVocabularyTest, TrieSpellsEveryTextToken) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  const TokenVocabulary& v = *sv.vocab;
  const auto& trie = v.trie();
  const auto& sorted = v.sorted_text_tokens();
  std::vector<int> seen(v.tokenizer_size(), 0);
  std::vector<std::string> path{""};
  for (size_t i = 1; i < trie.size(); ++i) {
    const auto& n = trie[i];
    ASSERT_GE(n.depth, 1);
    path.resize(n.depth);
    path.push_back(path.back() + static_cast<char>(n.byte));
    ASSERT_GT(n.subtree_end, static_cast<int32_t>(i));
    for (int32_t k = n.tokens_begin; k < n.tokens_end; ++k) {
      EXPECT_EQ(v.token_bytes(sorted[k]), path.back());
      ++seen[sorted[k]];
    }
    int32_t deepest = 0;
    for (int32_t j = static_cast<int32_t>(i) + 1; j < n.subtree_end; ++j) {
      ASSERT_GT(trie[j].depth, n.depth);
      deepest = std::max(deepest, trie[j].depth - n.depth);
    }
    EXPECT_EQ(n.max_below, deepest);
  }
  for (int32_t id = 0; id < v.tokenizer_size(); ++id) {
    EXPECT_EQ(seen[id], v.is_text(id) ? 1 : 0) << id;
  }
  EXPECT_FALSE(v.is_text(sv.eos));
  EXPECT_FALSE(v.is_text(sv.special));
  EXPECT_FALSE(v.is_text(sv.empty));
  for (size_t k = 1; k < sorted.size(); ++k) {
    EXPECT_LE(v.token_bytes(sorted[k - 1]), v.token_bytes(sorted[k]));
  }
}

}  // namespace
}  // namespace expertmesh::grammar
