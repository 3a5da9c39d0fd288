#include <filesystem>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/make_model/make_model.h"
#include "tools/make_model/tokenizer_family.h"

namespace expertmesh::make_model {
namespace {

using model::Architecture;

// English, Korean, Chinese, Japanese, code with indentation, emoji, whitespace runs.
const char kSample[] =
    "The quick brown fox jumps over the lazy dog. 안녕하세요, 오늘 날씨가 정말 좋네요! "
    "我们今天去公园散步。今日はいい天気ですね。\n"
    "def add(a, b):\n    return a + b\n\nfor (int i = 0; i < n; ++i) {\n  sum += i;\n}\n"
    "Emoji: 🚀🔥👍🏽 and 👨‍👩‍👧 family.   Tabs\tand  spaces.";

class TokenizerFilesTest : public ::testing::TestWithParam<Architecture> {
 protected:
  static std::string MakeTiny(Architecture arch) {
    MakeModelOptions options;
    options.arch = arch;
    // One directory per test: CTest runs the cases of this suite in parallel processes.
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    options.out_dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/make_model/tok-" +
                      std::string(model::ArchitectureName(arch)) + "-" +
                      std::string(test->name()).substr(0, std::string(test->name()).find('/'));
    std::filesystem::remove_all(options.out_dir);
    absl::StatusOr<MakeModelResult> result = MakeModel(options);
    EXPECT_TRUE(result.ok()) << result.status();
    return options.out_dir;
  }
};

TEST_P(TokenizerFilesTest, TokenizerJsonHasTheHuggingFaceShape) {
  const std::string dir = MakeTiny(GetParam());
  const TokenizerFamily& family = FamilyFor(GetParam());
  absl::StatusOr<nlohmann::json> t = ReadJsonFile(dir + "/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)["version"], "1.0");
  EXPECT_TRUE((*t)["truncation"].is_null());
  EXPECT_TRUE((*t)["padding"].is_null());
  const nlohmann::json& pre = (*t)["pre_tokenizer"];
  EXPECT_EQ(pre["type"], "Sequence");
  EXPECT_EQ(pre["pretokenizers"][0]["type"], "Split");
  EXPECT_EQ(pre["pretokenizers"][0]["pattern"]["Regex"], family.pattern);
  EXPECT_EQ(pre["pretokenizers"][0]["behavior"], "Isolated");
  EXPECT_EQ(pre["pretokenizers"][1]["type"], "ByteLevel");
  EXPECT_EQ(pre["pretokenizers"][1]["use_regex"], false);
  EXPECT_EQ((*t)["decoder"]["type"], "ByteLevel");
  const nlohmann::json& m = (*t)["model"];
  EXPECT_EQ(m["type"], "BPE");
  EXPECT_EQ(m["byte_fallback"], false);
  EXPECT_EQ(m["ignore_merges"], false);
  EXPECT_TRUE(m["unk_token"].is_null());
  EXPECT_EQ(m["vocab"].size(), 2048u);
  EXPECT_GT(m["merges"].size(), 1700u);
  ASSERT_EQ((*t)["added_tokens"].size(), family.special_tokens.size());
  for (const nlohmann::json& added : (*t)["added_tokens"]) {
    for (const char* key :
         {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}) {
      EXPECT_TRUE(added.contains(key)) << key;
    }
  }
  EXPECT_EQ((*t)["normalizer"].is_null(), !family.nfc);

  absl::StatusOr<nlohmann::json> c = ReadJsonFile(dir + "/tokenizer_config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)["eos_token"], family.eos_token);
  EXPECT_EQ((*c)["chat_template"], family.chat_template);
  EXPECT_EQ((*c)["added_tokens_decoder"].size(), family.special_tokens.size());
}

TEST_P(TokenizerFilesTest, EncodesAndDecodesEveryScriptWithMerges) {
  const std::string dir = MakeTiny(GetParam());
  const TokenizerFamily& family = FamilyFor(GetParam());
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer =
      tokenizer::Tokenizer::LoadFromDirectory(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(kSample, false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  // Merges at work: far fewer tokens than bytes (2048 tokens leave CJK and emoji mostly split).
  EXPECT_LT(ids->size() * 10, (sizeof(kSample) - 1) * 6);
  EXPECT_EQ((*tokenizer)->Decode(*ids, false), kSample);
  for (const char* piece : {"안녕하세요", "def add(a, b):\n    return", "🚀🔥", "我们今天"}) {
    absl::StatusOr<std::vector<int32_t>> piece_ids = (*tokenizer)->Encode(piece, false);
    ASSERT_TRUE(piece_ids.ok());
    EXPECT_EQ((*tokenizer)->Decode(*piece_ids, false), piece);
  }
  // "안녕하세요" is frequent in the corpus: at most about one token per syllable, not one per
  // byte (15).
  EXPECT_LE((*tokenizer)->Encode("안녕하세요", false)->size(), 6u);
  EXPECT_LE((*tokenizer)->Encode(" the", false)->size(), 1u);
  // Special tokens are single ids and bos is added when the family says so.
  for (const std::string& special : family.special_tokens) {
    absl::StatusOr<std::vector<int32_t>> s = (*tokenizer)->Encode(special, false);
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(s->size(), 1u) << special;
    EXPECT_EQ((*tokenizer)->IdToToken((*s)[0]), special);
  }
  absl::StatusOr<std::vector<int32_t>> with_bos = (*tokenizer)->Encode("hi", true);
  ASSERT_TRUE(with_bos.ok());
  if (family.add_bos) {
    EXPECT_EQ(with_bos->front(), (*tokenizer)->TokenToId(family.bos_token));
  } else {
    EXPECT_EQ(*with_bos, *(*tokenizer)->Encode("hi", false));
  }
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, TokenizerFilesTest,
                         ::testing::ValuesIn(model::AllArchitectures()), [](const auto& info) {
                           return std::string(model::ArchitectureName(info.param));
                         });

}  // namespace
}  // namespace expertmesh::make_model
