// Feature tests on a small hand-made byte-level BPE tokenizer: merge order, ignore_merges,
// added tokens and their flags, Split behaviors, normalizers, post-processors, decoding.
// Byte symbols have id == byte value; merged tokens start at 256 (see SmallTokenizerJson).
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/tokenizer/tokenizer.h"
#include "tests/model/tokenizer/test_util.h"

namespace expertmesh::tokenizer {
namespace {

using testing::BuildTokenizer;
using ::testing::ElementsAre;
using testing::SmallTokenizerJson;
using json = nlohmann::json;

constexpr int32_t kSpaceT = 256, kHe = 257, kSpaceThe = 258, kHello = 261, kEl = 262;
constexpr int32_t kADash = 263, kDashB = 264, kDashDash = 265;

std::vector<int32_t> EncodeOrDie(const Tokenizer& tok, std::string_view text,
                                 bool add_special = false) {
  absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text, add_special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(SmallTokenizerTest, MergesLowestRankFirst) {
  auto tok = BuildTokenizer(SmallTokenizerJson());
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOrDie(*tok, "hello the"), ElementsAre(kHello, kSpaceThe));
  // "h e" (rank 1) beats "e l" (rank 6); nothing merges "he" with "l".
  EXPECT_THAT(EncodeOrDie(*tok, "hel"), ElementsAre(kHe, 'l'));
  // Without "h", "e l" applies.
  EXPECT_THAT(EncodeOrDie(*tok, "el"), ElementsAre(kEl));
  EXPECT_THAT(EncodeOrDie(*tok, " t"), ElementsAre(kSpaceT));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{kHello, kSpaceThe}, false), "hello the");
  EXPECT_EQ(tok->vocab_size(), 266);
  EXPECT_EQ(tok->TokenToId("Ġthe"), kSpaceThe);
  EXPECT_EQ(tok->IdToToken(kSpaceThe), "Ġthe");
  EXPECT_EQ(tok->TokenToId("missing"), -1);
}

TEST(SmallTokenizerTest, HeapMergeGivesTheSameIds) {
  auto tok = BuildTokenizer(SmallTokenizerJson());
  ASSERT_NE(tok, nullptr);
  tok->bpe_model_for_testing().set_heap_threshold_for_testing(0);
  EXPECT_THAT(EncodeOrDie(*tok, "hello the"), ElementsAre(kHello, kSpaceThe));
  EXPECT_THAT(EncodeOrDie(*tok, "hel"), ElementsAre(kHe, 'l'));
  EXPECT_THAT(EncodeOrDie(*tok, "----"), ElementsAre(kDashDash, kDashDash));
  EXPECT_THAT(EncodeOrDie(*tok, "---"), ElementsAre(kDashDash, '-'));
}

TEST(SmallTokenizerTest, IgnoreMergesUsesWholeWordFromVocab) {
  json j = SmallTokenizerJson();
  j["model"]["vocab"]["hlo"] = 300;
  auto plain = BuildTokenizer(j);
  j["model"]["ignore_merges"] = true;
  auto ignoring = BuildTokenizer(j);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(ignoring, nullptr);
  EXPECT_THAT(EncodeOrDie(*plain, "hlo"), ElementsAre('h', 'l', 'o'));
  EXPECT_THAT(EncodeOrDie(*ignoring, "hlo"), ElementsAre(300));
}

TEST(SmallTokenizerTest, MergesAsPairsAreAccepted) {
  json j = SmallTokenizerJson();
  json pairs = json::array();
  for (const json& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    pairs.push_back(json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)}));
  }
  j["model"]["merges"] = pairs;
  auto tok = BuildTokenizer(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOrDie(*tok, "hello the"), ElementsAre(kHello, kSpaceThe));
}

TEST(SmallTokenizerTest, AddedTokensAreSplitOutLongestFirst) {
  json j = SmallTokenizerJson();
  j["added_tokens"] = json::array({
      {{"id", 300}, {"content", "<a>"}, {"special", true}, {"normalized", false}},
      {{"id", 301}, {"content", "<a><b>"}, {"special", true}, {"normalized", false}},
      {{"id", 302}, {"content", "hel"}, {"special", false}, {"normalized", true}},
  });
  auto tok = BuildTokenizer(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOrDie(*tok, "x<a><b>y<a>"), ElementsAre('x', 301, 'y', 300));
  // Non-special added tokens are split out too; "hello" contains "hel".
  EXPECT_THAT(EncodeOrDie(*tok, "hello"), ElementsAre(302, 'l', 'o'));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{'x', 301, 302}, false), "x<a><b>hel");
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{'x', 301, 302}, true), "xhel");
  EXPECT_TRUE(tok->IsSpecial(300));
  EXPECT_FALSE(tok->IsSpecial(302));
  EXPECT_EQ(tok->TokenToId("<a><b>"), 301);
  EXPECT_EQ(tok->vocab_size(), 303);
}

TEST(SmallTokenizerTest, AddedTokenFlags) {
  json j = SmallTokenizerJson();
  j["added_tokens"] = json::array({
      {{"id", 300}, {"content", "<L>"}, {"lstrip", true}, {"normalized", false}},
      {{"id", 301}, {"content", "<R>"}, {"rstrip", true}, {"normalized", false}},
      {{"id", 302}, {"content", "word"}, {"single_word", true}, {"normalized", false}},
  });
  auto tok = BuildTokenizer(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOrDie(*tok, "a  <L>b"), ElementsAre('a', 300, 'b'));
  // lstrip takes Unicode whitespace too (U+3000 ideographic space), but not other text.
  EXPECT_THAT(EncodeOrDie(*tok, "a\xE3\x80\x80\t<L>b"), ElementsAre('a', 300, 'b'));
  EXPECT_THAT(EncodeOrDie(*tok, "<L><L>"), ElementsAre(300, 300));
  EXPECT_THAT(EncodeOrDie(*tok, "a<R> \n b"), ElementsAre('a', 301, 'b'));
  EXPECT_THAT(EncodeOrDie(*tok, "a word"), ElementsAre('a', ' ', 302));
  EXPECT_THAT(EncodeOrDie(*tok, "swords"), ElementsAre('s', 'w', 'o', 'r', 'd', 's'));
}

json SplitPreTokenizer(const std::string& behavior, bool invert) {
  return {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({{{"type", "Split"},
                     {"pattern", {{"String", "-"}}},
                     {"behavior", behavior},
                     {"invert", invert}},
                    {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
}

TEST(SmallTokenizerTest, SplitBehaviors) {
  const std::string text = "a-b--c";
  struct Case {
    std::string behavior;
    bool invert;
    std::vector<int32_t> ids;
  };
  const std::vector<Case> cases = {
      {"Isolated", false, {'a', '-', 'b', '-', '-', 'c'}},
      {"Removed", false, {'a', 'b', 'c'}},
      {"MergedWithPrevious", false, {kADash, 'b', '-', '-', 'c'}},
      {"MergedWithNext", false, {'a', kDashB, '-', '-', 'c'}},
      {"Contiguous", false, {'a', '-', 'b', kDashDash, 'c'}},
      {"Removed", true, {'-', '-', '-'}},
  };
  for (const Case& c : cases) {
    json j = SmallTokenizerJson();
    j["pre_tokenizer"] = SplitPreTokenizer(c.behavior, c.invert);
    auto tok = BuildTokenizer(j);
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(EncodeOrDie(*tok, text), c.ids) << c.behavior << " invert=" << c.invert;
  }
}

TEST(SmallTokenizerTest, ByteLevelAddPrefixSpace) {
  json j = SmallTokenizerJson();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  auto tok = BuildTokenizer(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOrDie(*tok, "the"), ElementsAre(kSpaceThe));
  EXPECT_THAT(EncodeOrDie(*tok, " the"), ElementsAre(kSpaceThe));
}

TEST(SmallTokenizerTest, Normalizers) {
  json j = SmallTokenizerJson();
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       json::array({{{"type", "NFC"}},
                    {{"type", "Replace"}, {"pattern", {{"Regex", "x+"}}}, {"content", "y"}},
                    {{"type", "Prepend"}, {"prepend", "h"}}})}};
  auto tok = BuildTokenizer(j);
  ASSERT_NE(tok, nullptr);
  // NFC composes e + U+0301 into U+00E9 (bytes C3 A9); the byte ids are the byte values.
  EXPECT_THAT(EncodeOrDie(*tok, "e\xCC\x81"), ElementsAre('h', 0xC3, 0xA9));
  EXPECT_THAT(EncodeOrDie(*tok, "axxb"), ElementsAre('h', 'a', 'y', 'b'));
  EXPECT_THAT(EncodeOrDie(*tok, "ello"), ElementsAre(kHello));

  j["normalizer"] = {{"type", "NFKC"}};
  auto nfkc = BuildTokenizer(j);
  ASSERT_NE(nfkc, nullptr);
  EXPECT_THAT(EncodeOrDie(*nfkc, "\xEF\xAC\x81"), ElementsAre('f', 'i'));  // U+FB01 "fi"
}

TEST(SmallTokenizerTest, TemplatePostProcessorAddsSpecialTokens) {
  json j = SmallTokenizerJson();
  j["added_tokens"] = json::array({
      {{"id", 300}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
      {{"id", 301}, {"content", "</s>"}, {"special", true}, {"normalized", false}},
  });
  j["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       json::array(
           {{{"type", "ByteLevel"}},
            {{"type", "TemplateProcessing"},
             {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                     {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
             {"special_tokens",
              {{"<s>", {{"id", "<s>"}, {"ids", {300}}, {"tokens", {"<s>"}}}},
               {"</s>", {{"id", "</s>"}, {"ids", {301}}, {"tokens", {"</s>"}}}}}}}})}};
  auto tok = BuildTokenizer(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(EncodeOrDie(*tok, "hello", true), ElementsAre(300, kHello, 301));
  EXPECT_THAT(EncodeOrDie(*tok, "hello", false), ElementsAre(kHello));
  EXPECT_THAT(EncodeOrDie(*tok, "", true), ElementsAre(300, 301));

  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", "<s>:0 $A:0"},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {300}}}}}}};
  auto short_form = BuildTokenizer(j);
  ASSERT_NE(short_form, nullptr);
  EXPECT_THAT(EncodeOrDie(*short_form, "hello", true), ElementsAre(300, kHello));
}

TEST(SmallTokenizerTest, RejectsInvalidUtf8Input) {
  auto tok = BuildTokenizer(SmallTokenizerJson());
  ASSERT_NE(tok, nullptr);
  for (std::string_view bad : {std::string_view("\xFF"), std::string_view("ab\xC3"),
                               std::string_view("\xED\xA0\x80"), std::string_view("\xC0\xAF")}) {
    absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(bad, false);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(ids.status().message()), ::testing::HasSubstr("UTF-8"));
  }
  EXPECT_TRUE(tok->Encode(std::string_view("\0x", 2), false).ok());
}

TEST(SmallTokenizerTest, DecodeSkipsUnknownIdsAndReplacesBrokenUtf8) {
  auto tok = BuildTokenizer(SmallTokenizerJson());
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{'a', -5, 99999, 'b'}, false), "ab");
  // A lone lead byte, then a truncated 3-byte sequence: one U+FFFD each (maximal subparts).
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{0xC3, 'a', 0xE2, 0x82, 'b'}, false),
            "\xEF\xBF\xBD"
            "a"
            "\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{0xE2, 0x82}, false), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace expertmesh::tokenizer
