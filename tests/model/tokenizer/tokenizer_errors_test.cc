// Malformed or unsupported tokenizer files must give INVALID_ARGUMENT naming the file and the
// problem, never a crash.
#include <filesystem>
#include <string>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/tokenizer/tokenizer.h"
#include "tests/model/tokenizer/test_util.h"

namespace expertmesh::tokenizer {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::SmallTokenizerJson;
using json = nlohmann::json;

absl::Status LoadError(const std::string& text) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromJson(text, "bad/tokenizer.json");
  return tok.status();
}

void ExpectInvalid(const absl::Status& status, const std::string& problem) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("bad/tokenizer.json"), HasSubstr(problem)));
}

TEST(TokenizerErrorsTest, NotJson) {
  ExpectInvalid(LoadError("{\"model\": "), "not valid JSON");
  ExpectInvalid(LoadError(""), "not valid JSON");
  ExpectInvalid(LoadError("[1, 2]"), "top level must be an object");
}

TEST(TokenizerErrorsTest, MissingModel) {
  json j = SmallTokenizerJson();
  j.erase("model");
  ExpectInvalid(LoadError(j.dump()), "missing \"model\"");
}

TEST(TokenizerErrorsTest, UnknownModelType) {
  json j = SmallTokenizerJson();
  j["model"]["type"] = "WordPiece";
  ExpectInvalid(LoadError(j.dump()), "model type \"WordPiece\" is not supported");
  j["model"]["type"] = 7;
  ExpectInvalid(LoadError(j.dump()), "model.type");
}

TEST(TokenizerErrorsTest, MergeReferencesUnknownToken) {
  json j = SmallTokenizerJson();
  j["model"]["merges"].push_back("zz q");
  ExpectInvalid(LoadError(j.dump()), "references token \"zz\" not in the vocab");
}

TEST(TokenizerErrorsTest, MergedTokenMissing) {
  json j = SmallTokenizerJson();
  j["model"]["merges"].push_back("x y");
  ExpectInvalid(LoadError(j.dump()), "merged token \"xy\" is not in the vocab");
}

TEST(TokenizerErrorsTest, MalformedMergesAndVocab) {
  json j = SmallTokenizerJson();
  j["model"]["merges"].push_back("abc");
  ExpectInvalid(LoadError(j.dump()), "not two tokens");
  j = SmallTokenizerJson();
  j["model"]["merges"].push_back(json::array({"a"}));
  ExpectInvalid(LoadError(j.dump()), "model.merges[");
  j = SmallTokenizerJson();
  j["model"]["vocab"]["neg"] = -3;
  ExpectInvalid(LoadError(j.dump()), "non-negative integer id");
  j = SmallTokenizerJson();
  j["model"]["vocab"] = json::array();
  ExpectInvalid(LoadError(j.dump()), "model.vocab");
  j = SmallTokenizerJson();
  j["model"]["byte_fallback"] = true;
  ExpectInvalid(LoadError(j.dump()), "byte_fallback");
}

TEST(TokenizerErrorsTest, BadRegex) {
  json j = SmallTokenizerJson();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array(
           {{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
            {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  ExpectInvalid(LoadError(j.dump()), "does not compile");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "x"}};
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  ExpectInvalid(LoadError(j.dump()), "unknown behavior \"Sideways\"");
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Isolated";
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = "x";
  ExpectInvalid(LoadError(j.dump()), "\"pattern\" must be");
}

TEST(TokenizerErrorsTest, UnknownPreTokenizer) {
  json j = SmallTokenizerJson();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  ExpectInvalid(LoadError(j.dump()), "pre_tokenizer type \"Whitespace\" is not supported");
  j["pre_tokenizer"] = nullptr;
  ExpectInvalid(LoadError(j.dump()), "pre_tokenizer is null");
  // ByteLevel must come last.
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array(
           {{{"type", "ByteLevel"}},
            {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}}})}};
  ExpectInvalid(LoadError(j.dump()), "must come last");
}

TEST(TokenizerErrorsTest, UnsupportedNormalizerDecoderPostProcessor) {
  json j = SmallTokenizerJson();
  j["normalizer"] = {{"type", "Lowercase"}};
  ExpectInvalid(LoadError(j.dump()), "normalizer type \"Lowercase\" is not supported");
  j = SmallTokenizerJson();
  j["decoder"] = {{"type", "WordPiece"}};
  ExpectInvalid(LoadError(j.dump()), "decoder");
  j = SmallTokenizerJson();
  j["post_processor"] = {
      {"type", "TemplateProcessing"}, {"single", "<s> $A"}, {"special_tokens", json::object()}};
  ExpectInvalid(LoadError(j.dump()), "special token \"<s>\" is not defined");
  j["post_processor"] = {{"type", "Magic"}};
  ExpectInvalid(LoadError(j.dump()), "post_processor type \"Magic\"");
}

TEST(TokenizerErrorsTest, BadAddedTokens) {
  json j = SmallTokenizerJson();
  j["added_tokens"] = json::array({{{"content", "<x>"}}});
  ExpectInvalid(LoadError(j.dump()), "added_tokens[0]");
  j["added_tokens"] = json::array({{{"id", 300}, {"content", "<x>"}, {"special", "yes"}}});
  ExpectInvalid(LoadError(j.dump()), "added_tokens[0].special must be a boolean");
  j["added_tokens"] = json::object();
  ExpectInvalid(LoadError(j.dump()), "added_tokens must be an array");
}

TEST(TokenizerErrorsTest, DirectoryErrorsNameTheFile) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/tokenizer_errors_test_dir";
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir + "/tokenizer.json");
  absl::StatusOr<std::unique_ptr<Tokenizer>> missing = Tokenizer::LoadFromDirectory(dir);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(WriteStringToFile(dir + "/tokenizer.json", SmallTokenizerJson().dump()).ok());
  ASSERT_TRUE(WriteStringToFile(dir + "/tokenizer_config.json", "{\"bos_token\": 3").ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> bad_config = Tokenizer::LoadFromDirectory(dir);
  EXPECT_EQ(bad_config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_config.status().message()), HasSubstr("tokenizer_config.json"));

  ASSERT_TRUE(WriteStringToFile(dir + "/tokenizer_config.json", "{\"bos_token\": 3}").ok());
  bad_config = Tokenizer::LoadFromDirectory(dir);
  EXPECT_THAT(std::string(bad_config.status().message()),
              AllOf(HasSubstr("tokenizer_config.json"), HasSubstr("bos_token")));

  ASSERT_TRUE(WriteStringToFile(dir + "/tokenizer_config.json", "{}").ok());
  ASSERT_TRUE(WriteStringToFile(dir + "/generation_config.json", "{\"eos_token_id\": \"x\"}").ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> bad_generation = Tokenizer::LoadFromDirectory(dir);
  EXPECT_THAT(std::string(bad_generation.status().message()),
              AllOf(HasSubstr("generation_config.json"), HasSubstr("eos_token_id")));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace expertmesh::tokenizer
