// The engine at the real Qwen2 vocabulary (151k byte-level BPE tokens, many of them crossing
// grammar boundaries or splitting UTF-8 characters), against the brute-force reference. Skipped,
// visibly, when the tokenizer has not been fetched (tools/tokenizer/fetch_reference_tokenizers.sh;
// or set EXPERTMESH_TOKENIZER_DIR).
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/grammar_matcher.h"
#include "model/grammar/engine/token_vocabulary.h"
#include "model/grammar/json_schema.h"
#include "model/tokenizer/tokenizer.h"
#include "tests/model/grammar/engine/test_grammars.h"
#include "tests/model/grammar/engine/walk_checker.h"

namespace expertmesh::grammar {
namespace {

// Qwen2's lm_head rows: more than the tokenizer's ids, so the tail is padding.
constexpr int32_t kQwen2LogitRows = 151936;

class Qwen2GrammarTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = testing::Qwen2TokenizerDir();
    if (dir.empty()) return;
    auto tok = tokenizer::Tokenizer::LoadFromDirectory(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = tok->release();
    std::vector<int32_t> eos = tokenizer_->special_tokens().stop_ids;
    if (eos.empty()) eos.push_back(tokenizer_->eos_id());
    auto vocab = TokenVocabulary::FromTokenizer(*tokenizer_, eos, kQwen2LogitRows);
    ASSERT_TRUE(vocab.ok()) << vocab.status();
    vocab_ = new std::shared_ptr<const TokenVocabulary>(*vocab);
  }

  void SetUp() override {
    if (tokenizer_ == nullptr) {
      GTEST_SKIP() << "no Qwen2 tokenizer under $EXPERTMESH_TOKENIZER_DIR or "
                      "${build}/test-data/tokenizers (tools/tokenizer/"
                      "fetch_reference_tokenizers.sh fetches it)";
    }
  }

  static std::shared_ptr<const CompiledGrammar> Compile(const Grammar& g) {
    auto c = CompiledGrammar::Compile(g, *vocab_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  void Walk(const Grammar& g, int32_t walks, int32_t random_steps) {
    auto compiled = Compile(g);
    ASSERT_NE(compiled, nullptr);
    testing::WalkOptions options;
    options.walks = walks;
    options.random_steps = random_steps;
    options.budget_samples = 64;
    options.seed = 11;
    EXPECT_GT(testing::CheckRandomWalks(g, compiled, options), walks);
  }

  static tokenizer::Tokenizer* tokenizer_;
  static std::shared_ptr<const TokenVocabulary>* vocab_;
};

tokenizer::Tokenizer* Qwen2GrammarTest::tokenizer_ = nullptr;
std::shared_ptr<const TokenVocabulary>* Qwen2GrammarTest::vocab_ = nullptr;

TEST_F(Qwen2GrammarTest, VocabularyPaddingAndSpecialTokens) {
  const TokenVocabulary& v = **vocab_;
  EXPECT_EQ(v.size(), kQwen2LogitRows);
  EXPECT_GT(v.tokenizer_size(), 151000);
  EXPECT_LT(v.tokenizer_size(), kQwen2LogitRows);
  const int32_t im_end = tokenizer_->TokenToId("<|im_end|>");
  ASSERT_GE(im_end, 0);
  EXPECT_FALSE(v.is_text(im_end));
}

TEST_F(Qwen2GrammarTest, JsonMatchesTheReference) { Walk(testing::JsonGrammar(), 2, 8); }
TEST_F(Qwen2GrammarTest, Utf8MatchesTheReference) { Walk(testing::Utf8Grammar(), 2, 6); }
TEST_F(Qwen2GrammarTest, TextThroughMatchesTheReference) {
  Walk(testing::TextThroughGrammar(), 2, 8);
}
TEST_F(Qwen2GrammarTest, ArithmeticMatchesTheReference) {
  Walk(testing::ArithmeticGrammar(), 2, 8);
}
TEST_F(Qwen2GrammarTest, JsonObjectGrammarMatchesTheReference) { Walk(JsonObjectGrammar(), 1, 8); }
TEST_F(Qwen2GrammarTest, CorpusSchemasMatchTheReference) {
  for (const char* name : {"strict_calendar_event", "string_patterns", "integer_bounds"}) {
    SCOPED_TRACE(name);
    auto text = ReadFileToString(std::string(EXPERTMESH_SOURCE_DIR) +
                                 "/tests/data/structured/schemas/" + name + ".json");
    ASSERT_TRUE(text.ok()) << text.status();
    auto g = JsonSchemaToGrammar(*text);
    ASSERT_TRUE(g.ok()) << g.status();
    Walk(*g, 1, 6);
  }
}

// A model's own tokenization of a valid document is accepted token by token, each token in the
// mask; a document that breaks the grammar is stopped at the token that breaks it.
TEST_F(Qwen2GrammarTest, TokenizedInstancesAreAcceptedAndBreaksRefused) {
  auto compiled = Compile(JsonObjectGrammar());
  ASSERT_NE(compiled, nullptr);
  const std::string good =
      "{\n  \"name\": \"Ada\",\n  \"tags\": [\"math\", \"poetry\"],\n  \"n\": -1.5e3,\n"
      "  \"ok\": true, \"none\": null, \"s\": \"\\u00e9t\\u00e9 \xe6\x97\xa5\xe6\x9c\xac\"\n}";
  auto ids = tokenizer_->Encode(good, false);
  ASSERT_TRUE(ids.ok());
  GrammarMatcher m(compiled);
  std::vector<uint32_t> mask((*vocab_)->mask_words());
  for (int32_t id : *ids) {
    m.FillNextTokenBitmask(mask);
    ASSERT_TRUE((mask[id >> 5] >> (id & 31)) & 1) << "token " << id;
    ASSERT_TRUE(m.AcceptToken(id).ok());
  }
  EXPECT_TRUE(m.CanTerminate());
  EXPECT_TRUE(m.AcceptToken((*vocab_)->eos_ids().front()).ok());

  GrammarMatcher bad(compiled);
  auto bad_ids = tokenizer_->Encode("{\"a\": [1, 2}", false);
  ASSERT_TRUE(bad_ids.ok());
  std::string seen;
  size_t i = 0;
  for (; i < bad_ids->size(); ++i) {
    if (!bad.AcceptToken((*bad_ids)[i]).ok()) break;
    seen += (*vocab_)->token_bytes((*bad_ids)[i]);
  }
  EXPECT_EQ(seen, "{\"a\": [1, 2") << "refused at token " << i;
}

}  // namespace
}  // namespace expertmesh::grammar
