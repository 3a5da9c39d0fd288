// make-model's chat templates rendered by expertmesh's Jinja interpreter must equal what
// transformers' apply_chat_template renders for the same files. The expected strings below were
// printed by transformers 5.23 (tools/reference/check_make_model.py renders the same
// conversation and checks the same strings).
#include "model/chat/chat_template.h"
#include "gtest/gtest.h"
#include "tools/make_model/tokenizer_family.h"

namespace expertmesh::make_model {
namespace {

using model::Architecture;

struct Case {
  Architecture arch;
  const char* with_history;  // system, user, assistant, user + generation prompt
  const char* single_turn;   // one user turn + generation prompt
};

const Case kCases[] = {
    {Architecture::kLlama,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe "
     "brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi "
     "there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_"
     "header_id|>user<|end_header_id|>\n\n안녕? "
     "🚀<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi "
     "there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {Architecture::kMixtral,
     "<s>[INST] Be brief.\n\nHi there [/INST]Hello!</s>[INST] 안녕? 🚀 [/INST]",
     "<s>[INST] Hi there [/INST]"},
    {Architecture::kQwen3Moe,
     "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi "
     "there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n안녕? "
     "🚀<|im_end|>\n<|im_start|>assistant\n",
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi "
     "there<|im_end|>\n<|im_start|>assistant\n"},
    {Architecture::kDeepseekV2,
     "<｜begin▁of▁sentence｜>Be brief.\n\nUser: Hi there\n\nAssistant: "
     "Hello!<｜end▁of▁sentence｜>User: 안녕? 🚀\n\nAssistant:",
     "<｜begin▁of▁sentence｜>User: Hi there\n\nAssistant:"},
    {Architecture::kDeepseekV3,
     "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi "
     "there<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>안녕? 🚀<｜Assistant｜>",
     "<｜begin▁of▁sentence｜><｜User｜>Hi there<｜Assistant｜>"},
};

TEST(ChatTemplateTest, RendersLikeTransformers) {
  const nlohmann::ordered_json history = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "안녕? 🚀"}])");
  const nlohmann::ordered_json single =
      nlohmann::ordered_json::parse(R"([{"role": "user", "content": "Hi there"}])");
  for (const Case& c : kCases) {
    const TokenizerFamily& family = FamilyFor(c.arch);
    SCOPED_TRACE(family.name);
    absl::StatusOr<chat::ChatTemplate> parsed = chat::ChatTemplate::Parse(family.chat_template);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    chat::ChatRenderOptions options;
    options.add_generation_prompt = true;
    options.bos_token = family.bos_token;
    options.eos_token = family.eos_token;
    absl::StatusOr<std::string> rendered = chat::RenderChat(*parsed, history, options);
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(*rendered, c.with_history);
    rendered = chat::RenderChat(*parsed, single, options);
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(*rendered, c.single_turn);
  }
}

}  // namespace
}  // namespace expertmesh::make_model
