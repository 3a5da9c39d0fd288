// Every way a config.json can be wrong yields INVALID_ARGUMENT naming the file and the field.
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/config/model_config.h"

namespace expertmesh::model {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

Json Load(const std::string& file) {
  std::ifstream in(std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data/" + file);
  std::stringstream text;
  text << in.rdbuf();
  return Json::parse(text.str());
}

struct ErrorCase {
  std::string name;
  std::string base;  // data file to start from
  std::function<void(Json&)> break_it;
  std::string expected;  // substring of the message, usually the field
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class ConfigErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrorTest, NamesFileAndField) {
  const ErrorCase& c = GetParam();
  Json json = Load(c.base);
  // The unbroken file parses: the error below is caused by the mutation alone.
  ASSERT_TRUE(ParseModelConfig(json, "dir/config.json").ok());
  c.break_it(json);
  auto result = ParseModelConfig(json, "dir/config.json");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("dir/config.json"));
  EXPECT_THAT(result.status().message(), HasSubstr(c.expected));
}

INSTANTIATE_TEST_SUITE_P(
    AllErrors, ConfigErrorTest,
    ::testing::Values(
        ErrorCase{"UnknownArchitecture", "tiny_llama.json",
                  [](Json& j) { j["architectures"] = {"GPT2LMHeadModel"}; },
                  "unknown architecture 'GPT2LMHeadModel'"},
        ErrorCase{"NoArchitectures", "tiny_llama.json", [](Json& j) { j.erase("architectures"); },
                  "'architectures'"},
        ErrorCase{"ArchitecturesNotList", "tiny_llama.json",
                  [](Json& j) { j["architectures"] = 3; }, "'architectures'"},
        ErrorCase{"MissingHidden", "tiny_llama.json", [](Json& j) { j.erase("hidden_size"); },
                  "'hidden_size': missing"},
        ErrorCase{"HiddenIsString", "tiny_llama.json", [](Json& j) { j["hidden_size"] = "64"; },
                  "'hidden_size': expected an integer, got string"},
        ErrorCase{"HiddenIsFraction", "tiny_llama.json", [](Json& j) { j["hidden_size"] = 64.5; },
                  "'hidden_size': expected an integer"},
        ErrorCase{"NegativeLayers", "tiny_llama.json", [](Json& j) { j["num_hidden_layers"] = -1; },
                  "'num_hidden_layers': must be positive"},
        // Issue 15: `inspect` allocated ~5 GB and aborted on these instead of refusing them.
        ErrorCase{"AbsurdLayers", "tiny_qwen3_moe.json",
                  [](Json& j) { j["num_hidden_layers"] = 1000000000; },
                  "'num_hidden_layers': 1000000000 is beyond any supported model"},
        ErrorCase{"AbsurdExperts", "tiny_qwen3_moe.json",
                  [](Json& j) { j["num_experts"] = 1000000000; },
                  "'num_experts': 1000000000 is beyond any supported model"},
        ErrorCase{"AbsurdVocab", "tiny_llama.json", [](Json& j) { j["vocab_size"] = 1000000000; },
                  "'vocab_size': 1000000000 is beyond"},
        ErrorCase{"HeadsDoNotDivideHidden", "tiny_llama.json",
                  [](Json& j) { j["num_attention_heads"] = 5; j["num_key_value_heads"] = 5; },
                  "'num_attention_heads': 5 does not divide hidden_size 64"},
        ErrorCase{"KvHeadsDoNotDivideHeads", "tiny_llama.json",
                  [](Json& j) { j["num_key_value_heads"] = 3; }, "'num_key_value_heads'"},
        ErrorCase{"EpsIsBool", "tiny_llama.json", [](Json& j) { j["rms_norm_eps"] = true; },
                  "'rms_norm_eps': expected a number"},
        ErrorCase{"BadDtype", "tiny_llama.json", [](Json& j) { j["torch_dtype"] = "int4"; },
                  "'torch_dtype': unsupported dtype 'int4'"},
        ErrorCase{"BadDtypeTf5", "tiny_qwen3_moe_tf5.json", [](Json& j) { j["dtype"] = "fp4"; },
                  "'dtype': unsupported dtype"},
        ErrorCase{"EosOutsideVocab", "tiny_llama.json", [](Json& j) { j["eos_token_id"] = 9999; },
                  "'eos_token_id'"},
        ErrorCase{"EosNotInt", "tiny_llama.json", [](Json& j) { j["eos_token_id"] = "x"; },
                  "'eos_token_id'"},
        ErrorCase{"UnsupportedActivation", "tiny_llama.json",
                  [](Json& j) { j["hidden_act"] = "gelu"; }, "'hidden_act'"},
        ErrorCase{"UnknownRopeType", "tiny_llama.json",
                  [](Json& j) { j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2}}; },
                  "'rope_scaling.rope_type': unsupported RoPE scaling 'longrope'"},
        ErrorCase{"RopeWithoutFactor", "tiny_llama.json",
                  [](Json& j) { j["rope_scaling"] = {{"type", "linear"}}; },
                  "'rope_scaling.factor': missing"},
        ErrorCase{"Llama3RopeWithoutOriginal", "tiny_llama.json",
                  [](Json& j) { j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; },
                  "'rope_scaling.original_max_position_embeddings'"},
        ErrorCase{"RopeParametersNotObject", "tiny_qwen3_moe_tf5.json",
                  [](Json& j) { j["rope_parameters"] = 7; }, "'rope_parameters': expected an object"},
        ErrorCase{"TopkAboveExperts", "tiny_mixtral.json",
                  [](Json& j) { j["num_experts_per_tok"] = 5; },
                  "'num_experts_per_tok': 5 exceeds the 4 experts"},
        ErrorCase{"MixtralWithoutExperts", "tiny_mixtral.json",
                  [](Json& j) { j.erase("num_local_experts"); }, "'num_local_experts': missing"},
        ErrorCase{"QwenMoeWithoutMoeWidth", "tiny_qwen3_moe.json",
                  [](Json& j) { j.erase("moe_intermediate_size"); },
                  "'moe_intermediate_size': missing"},
        ErrorCase{"QwenMlpOnlyLayerOutOfRange", "tiny_qwen2_moe.json",
                  [](Json& j) { j["mlp_only_layers"] = {7}; }, "'mlp_only_layers'"},
        ErrorCase{"QwenSparseStepZero", "tiny_qwen2_moe.json",
                  [](Json& j) { j["decoder_sparse_step"] = 0; }, "'decoder_sparse_step'"},
        ErrorCase{"QwenWindowWithoutSize", "tiny_qwen2_moe.json",
                  [](Json& j) {
                    j["use_sliding_window"] = true;
                    j.erase("sliding_window");
                  },
                  "'sliding_window': missing"},
        ErrorCase{"NGroupDoesNotDivideExperts", "tiny_deepseek_v3.json",
                  [](Json& j) { j["n_group"] = 3; },
                  "'n_group': 3 does not divide the 8 experts"},
        ErrorCase{"TopkGroupAboveNGroup", "tiny_deepseek_v3.json",
                  [](Json& j) { j["topk_group"] = 5; }, "'topk_group'"},
        ErrorCase{"TopkBeyondSelectedGroups", "tiny_deepseek_v3.json",
                  [](Json& j) {
                    j["topk_group"] = 1;
                    j["num_experts_per_tok"] = 3;
                  },
                  "'num_experts_per_tok': 3 exceeds the experts of the 1 selected groups"},
        ErrorCase{"UnknownScoring", "tiny_deepseek_v3.json",
                  [](Json& j) { j["scoring_func"] = "relu"; }, "'scoring_func'"},
        ErrorCase{"UnknownTopkMethod", "tiny_deepseek_v2.json",
                  [](Json& j) { j["topk_method"] = "random"; }, "'topk_method'"},
        ErrorCase{"MlaWithoutKvLora", "tiny_deepseek_v2.json",
                  [](Json& j) { j.erase("kv_lora_rank"); }, "'kv_lora_rank': missing"},
        ErrorCase{"OddRopeDim", "tiny_deepseek_v2.json",
                  [](Json& j) { j["qk_rope_head_dim"] = 7; }, "'qk_rope_head_dim'"},
        ErrorCase{"FirstDenseBeyondLayers", "tiny_deepseek_v2.json",
                  [](Json& j) { j["first_k_dense_replace"] = 9; }, "'first_k_dense_replace'"},
        ErrorCase{"UnsupportedQuantization", "tiny_deepseek_v3.json",
                  [](Json& j) { j["quantization_config"] = {{"quant_method", "awq"}}; },
                  "'quantization_config.quant_method': unsupported quantization 'awq'"},
        ErrorCase{"Fp8WithoutBlocks", "tiny_deepseek_v3.json",
                  [](Json& j) { j["quantization_config"] = {{"quant_method", "fp8"}}; },
                  "'quantization_config.weight_block_size'"},
        ErrorCase{"Fp8ZeroBlock", "tiny_deepseek_v3.json",
                  [](Json& j) {
                    j["quantization_config"] = {{"quant_method", "fp8"},
                                                {"weight_block_size", {0, 128}}};
                  },
                  "weight_block_size[0]"},
        ErrorCase{"Fp8ModulesNotAList", "tiny_deepseek_v3.json",
                  [](Json& j) {
                    j["quantization_config"] = {{"quant_method", "fp8"},
                                                {"weight_block_size", {128, 128}},
                                                {"modules_to_not_convert", "lm_head"}};
                  },
                  "'quantization_config.modules_to_not_convert': expected a list of strings"},
        ErrorCase{"Fp8ModulePatternNotARegex", "tiny_deepseek_v3.json",
                  [](Json& j) {
                    j["quantization_config"] = {{"quant_method", "fp8"},
                                                {"weight_block_size", {128, 128}},
                                                {"modules_to_not_convert", {"lm_head", "layers.(1"}}};
                  },
                  "'quantization_config.modules_to_not_convert': module pattern 'layers.(1' is "
                  "not a regular expression"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(ConfigErrorTest, NotAnObject) {
  auto result = ParseModelConfig(Json::array({1, 2}), "dir/config.json");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("dir/config.json: expected a JSON object"));
}

}  // namespace
}  // namespace expertmesh::model
