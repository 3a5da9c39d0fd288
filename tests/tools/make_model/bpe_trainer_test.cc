#include "tools/make_model/bpe_trainer.h"

#include <chrono>
#include <set>

#include "gtest/gtest.h"
#include "tools/make_model/byte_level.h"
#include "tools/make_model/corpus.h"
#include "tools/make_model/pretokenizer.h"

namespace expertmesh::make_model {
namespace {

using Merge = std::pair<std::string, std::string>;

PreTokenizer Llama3() {
  absl::StatusOr<PreTokenizer> p = PreTokenizer::Create(kLlama3Pattern);
  EXPECT_TRUE(p.ok()) << p.status();
  return *std::move(p);
}

TEST(ByteLevelTest, AlphabetIsABijectionOverPrintableCharacters) {
  const auto& alphabet = ByteLevelAlphabet();
  std::set<std::string> distinct(alphabet.begin(), alphabet.end());
  EXPECT_EQ(distinct.size(), 256u);
  EXPECT_EQ(alphabet['A'], "A");
  EXPECT_EQ(alphabet[' '], "\xC4\xA0");   // U+0120 'Ġ'
  EXPECT_EQ(alphabet['\n'], "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(alphabet[0xff], "\xC3\xBF");  // 'ÿ' stays itself
  EXPECT_EQ(ByteLevelEncode("a b"),
            "a\xC4\xA0"
            "b");
}

TEST(PreTokenizerTest, SplitsLikeLlama3) {
  PreTokenizer p = Llama3();
  absl::StatusOr<std::vector<std::string_view>> pieces =
      p.Split("Hello world's 12345 안녕하세요  x\n\n  if (a) {");
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  const std::vector<std::string_view> expected = {
      "Hello", " world", "'s", " ",   "123", "45", " 안녕하세요", " ",
      " x",    "\n\n",   " ",  " if", " (",  "a",  ")",           " {"};
  EXPECT_EQ(*pieces, expected);
}

TEST(PreTokenizerTest, QwenSplitsDigitsOneByOne) {
  absl::StatusOr<PreTokenizer> p = PreTokenizer::Create(kQwen2Pattern);
  ASSERT_TRUE(p.ok());
  absl::StatusOr<std::vector<std::string_view>> pieces = p->Split("x 2024");
  ASSERT_TRUE(pieces.ok());
  const std::vector<std::string_view> expected = {"x", " ", "2", "0", "2", "4"};
  EXPECT_EQ(*pieces, expected);
}

TEST(PreTokenizerTest, RejectsInvalidUtf8AndBadPatterns) {
  EXPECT_FALSE(Llama3().Split("ok \xff\xfe").ok());
  EXPECT_EQ(PreTokenizer::Create("(unclosed").status().code(), absl::StatusCode::kInvalidArgument);
}

// Worked by hand: pre-tokens "low", " low" x2, " lower", " lowest". (l,o) and (o,w) both occur
// 5 times; the tie goes to the smaller ids ('l' < 'o'). Then "lo"+"w" (5), " "+"low" (4),
// " low"+"e" (2); every remaining pair occurs once.
TEST(BpeTrainerTest, LearnsMergesInFrequencyOrder) {
  BpeTrainerOptions options;
  options.vocab_size = 1000;
  options.min_frequency = 2;
  absl::StatusOr<BpeModel> model = TrainBpe({"low low low lower lowest"}, Llama3(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<Merge> expected = {
      {"l", "o"}, {"lo", "w"}, {"\xC4\xA0", "low"}, {"\xC4\xA0low", "e"}};
  EXPECT_EQ(model->merges, expected);
  ASSERT_EQ(model->vocab.size(), 260u);
  EXPECT_EQ(model->vocab[259], "\xC4\xA0lowe");

  // With min_frequency 1 the pairs seen once are merged too, until every word is one token.
  // Ties go to the smaller ids: "s"+"t" (115, 116), "Ġlowe"+"r" (259, 114), "Ġlowe"+"st".
  options.min_frequency = 1;
  absl::StatusOr<BpeModel> all = TrainBpe({"low low low lower lowest"}, Llama3(), options);
  ASSERT_TRUE(all.ok());
  std::set<std::string> vocab(all->vocab.begin(), all->vocab.end());
  EXPECT_TRUE(vocab.count("\xC4\xA0lower"));
  EXPECT_TRUE(vocab.count("\xC4\xA0lowest"));
  ASSERT_EQ(all->merges.size(), 7u);
  EXPECT_EQ(all->merges[4], Merge("s", "t"));
  EXPECT_EQ(all->merges[5], Merge("\xC4\xA0lowe", "r"));
  EXPECT_EQ(all->merges[6], Merge("\xC4\xA0lowe", "st"));
}

TEST(BpeTrainerTest, StopsAtTheTargetVocabSize) {
  BpeTrainerOptions options;
  options.vocab_size = 258;
  absl::StatusOr<BpeModel> model = TrainBpe({"low low low lower lowest"}, Llama3(), options);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->vocab.size(), 258u);
  EXPECT_EQ(model->merges.size(), 2u);
  options.vocab_size = 100;
  EXPECT_EQ(TrainBpe({"x"}, Llama3(), options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BpeTrainerTest, TrainsTheBuiltinCorpusQuicklyAndDeterministically) {
  std::vector<std::string> docs;
  size_t bytes = 0;
  for (const CorpusDocument& doc : BuiltinCorpus()) {
    docs.push_back(doc.text);
    bytes += doc.text.size();
  }
  ASSERT_GT(bytes, 50'000u) << "the built-in corpus is missing or truncated";
  BpeTrainerOptions options;
  options.vocab_size = 4096;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<BpeModel> a = TrainBpe(docs, Llama3(), options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->vocab.size(), 4096u);
  EXPECT_LT(seconds, 10.0);
  absl::StatusOr<BpeModel> b = TrainBpe(docs, Llama3(), options);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->merges, b->merges);
  EXPECT_EQ(a->vocab, b->vocab);
  // Each merge's parts were in the vocabulary before it.
  std::set<std::string> seen(a->vocab.begin(), a->vocab.begin() + 256);
  for (const Merge& m : a->merges) {
    EXPECT_TRUE(seen.count(m.first) && seen.count(m.second)) << m.first << " " << m.second;
    seen.insert(m.first + m.second);
  }
  // Frequent words of each script became single tokens.
  std::set<std::string> vocab(a->vocab.begin(), a->vocab.end());
  EXPECT_TRUE(vocab.count(ByteLevelEncode(" the")));
  EXPECT_TRUE(vocab.count(ByteLevelEncode(" return")));
  EXPECT_TRUE(vocab.count(ByteLevelEncode("니다")));
}

}  // namespace
}  // namespace expertmesh::make_model
