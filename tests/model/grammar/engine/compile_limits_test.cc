// A client's grammar may not take more than CompileLimits of the worker: the compile stops and
// says which limit, and a grammar exactly at the limit still compiles.
#include <memory>

#include "gtest/gtest.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "tests/model/grammar/engine/test_grammars.h"

namespace expertmesh::grammar {
namespace {

// Every printable ASCII character, `count` times: one automaton position per character.
Grammar PrintableRun(int32_t count) {
  Grammar g;
  g.rules.push_back({"root", Expr::Repeat(Expr::CharClass({{0x20, 0x7e}}), count, count)});
  return g;
}

CompileStats StatsWithoutLimits(const Grammar& g, std::shared_ptr<const TokenVocabulary> v) {
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::Compile(
      g, std::move(v), {.max_trie_steps = INT64_MAX, .max_table_bytes = INT64_MAX});
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? (*c)->stats() : CompileStats{};
}

TEST(CompileLimitsTest, TrieStepsPastTheLimitAreRefusedAndAtTheLimitCompile) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  const Grammar g = PrintableRun(200);
  const CompileStats stats = StatsWithoutLimits(g, sv.vocab);
  ASSERT_GT(stats.trie_steps, 200);

  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> over = CompiledGrammar::Compile(
      g, sv.vocab, {.max_trie_steps = stats.trie_steps - 1, .max_table_bytes = INT64_MAX});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("grammar too large to compile"), std::string::npos)
      << over.status();

  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> at = CompiledGrammar::Compile(
      g, sv.vocab, {.max_trie_steps = stats.trie_steps, .max_table_bytes = INT64_MAX});
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ((*at)->stats().trie_steps, stats.trie_steps);
}

TEST(CompileLimitsTest, TableBytesPastTheLimitAreRefused) {
  const testing::SmallVocab sv = testing::MakeSmallVocab();
  const Grammar g = PrintableRun(50);
  const CompileStats stats = StatsWithoutLimits(g, sv.vocab);
  ASSERT_GT(stats.table_bytes, 0);

  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> over = CompiledGrammar::Compile(
      g, sv.vocab, {.max_trie_steps = INT64_MAX, .max_table_bytes = stats.table_bytes - 1});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(CompiledGrammar::Compile(
                  g, sv.vocab, {.max_trie_steps = INT64_MAX, .max_table_bytes = stats.table_bytes})
                  .ok());
}

}  // namespace
}  // namespace expertmesh::grammar
