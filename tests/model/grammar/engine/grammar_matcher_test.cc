#include "model/grammar/engine/grammar_matcher.h"

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "tests/model/grammar/engine/reference_matcher.h"
#include "tests/model/grammar/engine/test_grammars.h"
#include "tests/model/grammar/engine/walk_checker.h"

namespace expertmesh::grammar {
namespace {

using testing::AllTestGrammars;
using testing::MakeSmallVocab;
using testing::NamedGrammar;

std::shared_ptr<const CompiledGrammar> CompileOrDie(const Grammar& g,
                                                    std::shared_ptr<const TokenVocabulary> v) {
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::Compile(g, v);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

int32_t TokenId(const TokenVocabulary& v, std::string_view bytes) {
  for (int32_t id : v.sorted_text_tokens()) {
    if (v.token_bytes(id) == bytes) return id;
  }
  ADD_FAILURE() << "no token \"" << bytes << "\"";
  return -1;
}

bool Allowed(const GrammarMatcher& m, int32_t id) {
  std::vector<uint32_t> mask(m.compiled().vocab().mask_words());
  m.FillNextTokenBitmask(mask);
  return (mask[id >> 5] >> (id & 31)) & 1;
}

class GrammarWalkTest : public ::testing::TestWithParam<NamedGrammar> {};

TEST_P(GrammarWalkTest, EverythingMatchesTheReferenceAlongRandomWalks) {
  const testing::SmallVocab sv = MakeSmallVocab();
  auto compiled = CompileOrDie(GetParam().grammar, sv.vocab);
  ASSERT_NE(compiled, nullptr);
  for (uint32_t seed : {1u, 2u, 3u}) {
    testing::WalkOptions options;
    options.walks = 3;
    options.random_steps = 25;
    options.seed = seed;
    const int64_t steps = testing::CheckRandomWalks(GetParam().grammar, compiled, options);
    EXPECT_GT(steps, options.walks) << "seed " << seed;
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Grammars, GrammarWalkTest, ::testing::ValuesIn(AllTestGrammars()),
                         [](const ::testing::TestParamInfo<NamedGrammar>& info) {
                           return info.param.name;
                         });

// The walks above exercise the id-list and bitset forms of the node tables; a vocabulary of
// printable ASCII makes a node that accepts nearly everything store its few rejected ids.
TEST(CompiledGrammarTest, EveryTableFormMatchesTheReference) {
  const testing::SmallVocab sv = MakeSmallVocab();
  std::set<NodeTokenMasks::Form> forms;
  for (const NamedGrammar& g : AllTestGrammars()) {
    auto compiled = CompileOrDie(g.grammar, sv.vocab);
    const auto& a = compiled->automaton();
    for (size_t n = 0; n < a.nodes.size(); ++n) {
      if (!a.nodes[n].bytes.empty()) forms.insert(compiled->masks(static_cast<int32_t>(n)).form);
    }
  }
  EXPECT_TRUE(forms.contains(NodeTokenMasks::Form::kAcceptedIds));
  EXPECT_TRUE(forms.contains(NodeTokenMasks::Form::kBitset));

  std::vector<std::string> bytes;
  for (char c = ' '; c <= '~'; ++c) bytes.push_back(std::string(1, c));
  for (const char* t : {"ab", "a!", "!!", "a!b", "xyz", "!x", "hello world"}) bytes.push_back(t);
  const int32_t eos = static_cast<int32_t>(bytes.size());
  bytes.push_back("</s>");
  std::vector<bool> special(bytes.size(), false);
  special[eos] = true;
  auto vocab = TokenVocabulary::Create(bytes, special, {eos}, eos + 1);
  ASSERT_TRUE(vocab.ok());
  Grammar g;
  g.rules.push_back(
      {"root", Expr::Sequence({Expr::Repeat(Expr::CharClass({{'!', '!'}}, true), 0, kUnbounded),
                               Expr::Literal("!")})});
  auto compiled = CompileOrDie(g, *vocab);
  const NodeTokenMasks& root = compiled->masks(compiled->automaton().root_start());
  EXPECT_EQ(root.form, NodeTokenMasks::Form::kRejectedIds);
  testing::WalkOptions options;
  options.walks = 3;
  options.random_steps = 10;
  EXPECT_GT(testing::CheckRandomWalks(g, compiled, options), options.walks);
}

TEST(GrammarMatcherTest, SpecialEmptyAndPaddingIdsAreNeverAllowedNorAccepted) {
  const testing::SmallVocab sv = MakeSmallVocab();
  // A grammar that accepts any text, so only the token kind decides.
  Grammar g;
  g.rules.push_back({"root", Expr::Repeat(Expr::CharClass({}, /*negated=*/true), 0, kUnbounded)});
  auto compiled = CompileOrDie(g, sv.vocab);
  GrammarMatcher m(compiled);
  std::vector<uint32_t> mask(sv.vocab->mask_words());
  m.FillNextTokenBitmask(mask);
  auto bit = [&](int32_t id) { return (mask[id >> 5] >> (id & 31)) & 1; };
  EXPECT_TRUE(bit(sv.eos));  // the empty text is complete
  EXPECT_FALSE(bit(sv.special));
  EXPECT_FALSE(bit(sv.empty));
  for (int32_t id = sv.padding; id < sv.vocab->mask_words() * 32; ++id) EXPECT_FALSE(bit(id));
  EXPECT_TRUE(bit(TokenId(*sv.vocab, "中文")));
  // Single bytes that are not UTF-8 on their own still start or continue a character.
  EXPECT_TRUE(bit(0xE4));
  EXPECT_FALSE(bit(0xFF));  // never part of UTF-8
  EXPECT_EQ(m.AcceptToken(sv.special).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AcceptToken(sv.empty).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AcceptToken(sv.padding).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AcceptToken(sv.vocab->size()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AcceptToken(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(m.IsTerminated());
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "\xe4\xb8")).ok());  // 2 of 3 bytes of 中
  EXPECT_FALSE(m.CanTerminate());
  EXPECT_FALSE(Allowed(m, sv.eos));
  EXPECT_FALSE(Allowed(m, 'A'));
  EXPECT_EQ(m.MinBytesToComplete(), 1);
  EXPECT_EQ(m.AcceptToken(sv.eos).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AcceptToken('A').code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "\xad\xe6")).ok());  // ends 中, starts 文
  EXPECT_EQ(m.MinBytesToComplete(), 2);
  EXPECT_EQ(m.MinBytesToCompleteAfter(0x96), 1);
  EXPECT_EQ(m.MinBytesToCompleteAfter('A'), std::nullopt);
  ASSERT_TRUE(m.AcceptToken(0x96).ok());
  ASSERT_TRUE(m.AcceptToken(0x87).ok());
  EXPECT_TRUE(m.CanTerminate());
  EXPECT_TRUE(m.AcceptToken(sv.eos).ok());
  EXPECT_TRUE(m.IsTerminated());
}

TEST(GrammarMatcherTest, RightRecursionRunsInConstantStackDepth) {
  const testing::SmallVocab sv = MakeSmallVocab();
  auto compiled = CompileOrDie(testing::TextThroughGrammar(), sv.vocab);
  GrammarMatcher m(compiled);
  ASSERT_TRUE(m.AcceptToken('A').ok());
  const std::vector<std::string> filler = {"x<", "ab", "<<", "/t", "中文", "</", "t>", " \""};
  int32_t deepest = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string& piece = filler[i % filler.size()];
    // "</" followed by "t>" would close the marker: keep it open by skipping "t>" after "</".
    if (piece == "t>" && filler[(i - 1) % filler.size()] == "</") continue;
    ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, piece)).ok()) << i;
    deepest = std::max(deepest, m.max_stack_depth());
  }
  EXPECT_LE(deepest, 3) << "tail calls must not grow the stack";
  EXPECT_LE(m.num_stacks(), 4);
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "</t>")).ok());
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "ab!")).ok());
  EXPECT_TRUE(m.CanTerminate());
}

TEST(GrammarMatcherTest, DeepNestingPushesAndPopsFrames) {
  const testing::SmallVocab sv = MakeSmallVocab();
  auto compiled = CompileOrDie(testing::JsonGrammar(), sv.vocab);
  GrammarMatcher m(compiled);
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "{\"")).ok());
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "a\":")).ok());
  const int depth = 3000;
  for (int i = 0; i < depth; ++i) ASSERT_TRUE(m.AcceptToken('[').ok()) << i;
  EXPECT_GE(m.max_stack_depth(), depth);
  // Closing needs every bracket and the brace.
  EXPECT_EQ(m.MinBytesToComplete(), depth + 1);
  for (int i = 0; i < depth; ++i) ASSERT_TRUE(m.AcceptToken(']').ok()) << i;
  ASSERT_TRUE(m.AcceptToken('}').ok());
  EXPECT_TRUE(m.CanTerminate());
  EXPECT_TRUE(m.AcceptToken(sv.eos).ok());
}

TEST(GrammarMatcherTest, ACopyContinuesIndependently) {
  const testing::SmallVocab sv = MakeSmallVocab();
  auto compiled = CompileOrDie(testing::JsonGrammar(), sv.vocab);
  GrammarMatcher m(compiled);
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "{\"")).ok());
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "a\":")).ok());
  ASSERT_TRUE(m.AcceptToken('[').ok());
  auto copy = std::make_unique<GrammarMatcher>(m);
  ASSERT_TRUE(copy->AcceptToken(TokenId(*sv.vocab, "{}")).ok());
  EXPECT_FALSE(copy->AcceptToken(TokenId(*sv.vocab, "}]")).ok());
  ASSERT_TRUE(copy->AcceptToken(']').ok());
  ASSERT_TRUE(copy->AcceptToken('}').ok());
  EXPECT_TRUE(copy->CanTerminate());
  // The original is still inside the array, and keeps working after the copy is gone.
  copy.reset();
  EXPECT_FALSE(m.CanTerminate());
  EXPECT_EQ(m.MinBytesToComplete(), 2);
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "[1")).ok());
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, ",2]")).ok());
  EXPECT_FALSE(m.AcceptToken(TokenId(*sv.vocab, "}]")).ok());
  ASSERT_TRUE(m.AcceptToken(']').ok());
  ASSERT_TRUE(m.AcceptToken('}').ok());
  EXPECT_TRUE(m.CanTerminate());
}

TEST(GrammarMatcherTest, ThreadsShareOneCompiledGrammar) {
  const testing::SmallVocab sv = MakeSmallVocab();
  auto compiled = CompileOrDie(testing::JsonGrammar(), sv.vocab);
  const std::vector<std::string> pieces = {"{\"", "a\":", " ",  "[1", ", \"", "ab", "\"",
                                           "]",   ",",    "\"", "b",  "\": ", "{}", "}"};
  auto run = [&](std::vector<std::vector<uint32_t>>* masks) {
    GrammarMatcher m(compiled);
    for (const std::string& p : pieces) {
      std::vector<uint32_t> mask(sv.vocab->mask_words());
      m.FillNextTokenBitmask(mask);
      masks->push_back(mask);
      if (!m.AcceptToken(TokenId(*sv.vocab, p)).ok()) return;
    }
    masks->push_back({static_cast<uint32_t>(m.CanTerminate())});
  };
  std::vector<std::vector<uint32_t>> expected;
  run(&expected);
  ASSERT_EQ(expected.size(), pieces.size() + 1);
  EXPECT_EQ(expected.back()[0], 1u);
  constexpr int kThreads = 4;
  std::vector<std::vector<std::vector<uint32_t>>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::vector<uint32_t>> masks;
        run(&masks);
        if (rep == 0) got[t] = masks;
        if (masks != expected) got[t].clear();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(got[t], expected) << "thread " << t;
}

TEST(GrammarMatcherTest, GarbageFramesAreCollectedOnLongOutputs) {
  const testing::SmallVocab sv = MakeSmallVocab();
  auto compiled = CompileOrDie(testing::JsonGrammar(), sv.vocab);
  GrammarMatcher m(compiled);
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "{\"")).ok());
  ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "a\":")).ok());
  ASSERT_TRUE(m.AcceptToken('[').ok());
  // Values nested in ever different shapes: every shape leaves frames nobody refers to once it
  // is closed (equal shapes share frames, so only new ones grow the pool).
  constexpr int kLevels = 16;
  int64_t most_frames = 0;
  for (int shape = 0; shape < 20000; ++shape) {
    if (shape > 0) {
      ASSERT_TRUE(m.AcceptToken(',').ok());
    }
    for (int level = 0; level < kLevels; ++level) {
      if ((shape >> level) & 1) {
        ASSERT_TRUE(m.AcceptToken('[').ok());
      } else {
        ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "{\"")).ok());
        ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "a\":")).ok());
      }
    }
    ASSERT_TRUE(m.AcceptToken(TokenId(*sv.vocab, "null")).ok());
    for (int level = kLevels - 1; level >= 0; --level) {
      ASSERT_TRUE(m.AcceptToken((shape >> level) & 1 ? ']' : '}').ok()) << shape << " " << level;
    }
    most_frames = std::max(most_frames, m.num_frames());
  }
  // Without collection the distinct shapes leave over 100k frames; collection starts at 16k.
  EXPECT_LT(most_frames, 20000) << "garbage frames must be collected";
  EXPECT_FALSE(m.AcceptToken('}').ok());  // still inside the array
  ASSERT_TRUE(m.AcceptToken(']').ok());
  ASSERT_TRUE(m.AcceptToken('}').ok());
  EXPECT_TRUE(m.CanTerminate());
  EXPECT_LE(m.max_stack_depth(), 3);
}

}  // namespace
}  // namespace expertmesh::grammar
