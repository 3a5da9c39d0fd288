// tokenizer_config.json / generation_config.json parsing and the special tokens derived from them.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/tokenizer_config.h"
#include "tests/model/tokenizer/test_util.h"

namespace expertmesh::tokenizer {
namespace {

using ::testing::ElementsAre;
using json = nlohmann::json;

TEST(TokenizerConfigTest, ParsesStringsObjectsAndTemplates) {
  const std::string config = R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "pad_token": null, "add_bos_token": true, "add_eos_token": false,
    "model_max_length": 1000000000000000019884624838656,
    "chat_template": [{"name": "default", "template": "{{ x }}"},
                      {"name": "tool_use", "template": "{{ y }}"}]})";
  absl::StatusOr<TokenizerConfig> c = ParseTokenizerConfig(
      config, "tokenizer_config.json", R"({"eos_token_id": [301, 7]})", "generation_config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->bos_token, "<s>");
  EXPECT_EQ(c->eos_token, "</s>");
  EXPECT_FALSE(c->pad_token.has_value());
  EXPECT_EQ(c->add_bos_token, true);
  EXPECT_EQ(c->add_eos_token, false);
  EXPECT_FALSE(c->model_max_length.has_value());
  ASSERT_NE(c->ChatTemplate(), nullptr);
  EXPECT_EQ(*c->ChatTemplate(), "{{ x }}");
  EXPECT_EQ(*c->ChatTemplate("tool_use"), "{{ y }}");
  EXPECT_EQ(c->ChatTemplate("missing"), nullptr);
  EXPECT_THAT(c->generation_eos_token_ids, ElementsAre(301, 7));

  json j = testing::SmallTokenizerJson();
  j["added_tokens"] = json::array({
      {{"id", 300}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
      {{"id", 301}, {"content", "</s>"}, {"special", true}, {"normalized", false}},
  });
  auto tok = Tokenizer::FromJson(j.dump(), "small.json", *c);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->bos_id(), 300);
  EXPECT_EQ((*tok)->eos_id(), 301);
  EXPECT_EQ((*tok)->special_tokens().bos_token, "<s>");
  EXPECT_EQ((*tok)->special_tokens().pad_id, -1);
  EXPECT_THAT((*tok)->special_tokens().stop_ids, ElementsAre(301, 7));
}

TEST(TokenizerConfigTest, StringTemplateAndScalarEos) {
  absl::StatusOr<TokenizerConfig> c = ParseTokenizerConfig(
      R"({"chat_template": "{% for m in messages %}{% endfor %}", "model_max_length": 4096})",
      "tokenizer_config.json", R"({"eos_token_id": 2, "bos_token_id": 1})",
      "generation_config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c->ChatTemplate(), "{% for m in messages %}{% endfor %}");
  EXPECT_EQ(c->model_max_length, 4096);
  EXPECT_THAT(c->generation_eos_token_ids, ElementsAre(2));
  EXPECT_EQ(c->generation_bos_token_id, 1);
}

TEST(TokenizerConfigTest, RejectsMalformedFields) {
  for (const char* bad : {R"({"chat_template": 3})", R"({"chat_template": [{"name": "x"}]})",
                          R"({"add_bos_token": "yes"})", R"({"model_max_length": "big"})",
                          R"({"eos_token": {"text": "x"}})", "not json"}) {
    absl::StatusOr<TokenizerConfig> c =
        ParseTokenizerConfig(bad, "dir/tokenizer_config.json", "", "");
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(c.status().message()),
                ::testing::HasSubstr("dir/tokenizer_config.json"));
  }
}

TEST(TokenizerConfigTest, RealConfigs) {
  auto deepseek = testing::LoadRealTokenizer("deepseek-v3");
  ASSERT_NE(deepseek, nullptr);
  EXPECT_EQ(deepseek->special_tokens().bos_token, "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(deepseek->bos_id(), 0);
  EXPECT_EQ(deepseek->eos_id(), 1);
  EXPECT_EQ(deepseek->config().model_max_length, 131072);
  ASSERT_NE(deepseek->config().ChatTemplate(), nullptr);
  EXPECT_THAT(*deepseek->config().ChatTemplate(), ::testing::HasSubstr("<｜User｜>"));

  auto qwen = testing::LoadRealTokenizer("qwen2");
  ASSERT_NE(qwen, nullptr);
  EXPECT_EQ(qwen->eos_id(), 151643);
  EXPECT_EQ(qwen->TokenToId("<|im_start|>"), 151644);
  EXPECT_EQ(qwen->vocab_size(), 151646);
  EXPECT_THAT(*qwen->config().ChatTemplate(), ::testing::HasSubstr("<|im_start|>"));
}

}  // namespace
}  // namespace expertmesh::tokenizer
