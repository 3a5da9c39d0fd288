#include "model/config/weight_layout.h"
#include "model/config/module_filter.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace expertmesh::model {
namespace {

using ::testing::ElementsAre;

ModelConfig Load(const std::string& file) {
  const std::string path = std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data/" + file;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseModelConfig(nlohmann::json::parse(text.str()), path);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

std::map<std::string, TensorSpec> ByName(const std::vector<TensorSpec>& specs) {
  std::map<std::string, TensorSpec> out;
  for (const TensorSpec& s : specs) {
    EXPECT_TRUE(out.emplace(s.name, s).second) << "duplicate " << s.name;
  }
  return out;
}

struct CountCase {
  std::string file;
  size_t tensors;
};

class TensorCountTest : public ::testing::TestWithParam<CountCase> {};

// Counts worked out by hand from the modeling code of each architecture (see comments in the
// test file header of each case).
TEST_P(TensorCountTest, MatchesHandCount) {
  auto specs = ExpectedTensors(Load(GetParam().file));
  EXPECT_EQ(specs.size(), GetParam().tensors);
  EXPECT_EQ(ByName(specs).size(), specs.size());
}

INSTANTIATE_TEST_SUITE_P(
    Tiny, TensorCountTest,
    ::testing::Values(
        // embed + 2 x (2 norms + q,k,v,o + gate,up,down) + norm; tied, so no lm_head.
        CountCase{"tiny_llama.json", 20},
        // embed + 2 x (2 norms + 4 attn + router + 4 experts x w1,w2,w3) + norm + lm_head.
        CountCase{"tiny_mixtral.json", 41},
        // 3 dense layers x (2 norms + q,k,v + 3 biases + o + 3 mlp) + 1 MoE layer x (2 + 7 +
        // router + 8 x 3 + shared 3 + shared gate) + embed, norm, lm_head.
        CountCase{"tiny_qwen2_moe.json", 77},
        // 2 x (2 norms + 4 attn + q_norm, k_norm + router + 8 x 3) + 3.
        CountCase{"tiny_qwen3_moe.json", 69},
        // dense layer (2 + q_proj, kv_a, kv_a_ln, kv_b, o + 3) + 2 MoE (2 + 5 + router + 24 +
        // shared 3) + 3.
        CountCase{"tiny_deepseek_v2.json", 83},
        // dense (2 + q_a, q_a_ln, q_b, kv_a, kv_a_ln, kv_b, o + 3) + 2 MoE (2 + 7 + router +
        // bias + 24 + 3) + 3.
        CountCase{"tiny_deepseek_v3.json", 91}),
    [](const auto& info) {
      std::string name = info.param.file.substr(0, info.param.file.find('.'));
      return name;
    });

TEST(WeightLayoutTest, DeepseekV3TinyShapes) {
  auto specs = ByName(ExpectedTensors(Load("tiny_deepseek_v3.json")));
  const std::string a = "model.layers.1.self_attn.";
  EXPECT_THAT(specs.at(a + "q_a_proj.weight").shape, ElementsAre(48, 64));
  EXPECT_THAT(specs.at(a + "q_a_layernorm.weight").shape, ElementsAre(48));
  EXPECT_THAT(specs.at(a + "q_b_proj.weight").shape, ElementsAre(4 * 24, 48));
  EXPECT_THAT(specs.at(a + "kv_a_proj_with_mqa.weight").shape, ElementsAre(32 + 8, 64));
  EXPECT_THAT(specs.at(a + "kv_a_layernorm.weight").shape, ElementsAre(32));
  EXPECT_THAT(specs.at(a + "kv_b_proj.weight").shape, ElementsAre(4 * (16 + 16), 32));
  EXPECT_THAT(specs.at(a + "o_proj.weight").shape, ElementsAre(64, 4 * 16));
  const std::string m = "model.layers.1.mlp.";
  EXPECT_THAT(specs.at(m + "gate.weight").shape, ElementsAre(8, 64));
  EXPECT_THAT(specs.at(m + "gate.e_score_correction_bias").shape, ElementsAre(8));
  EXPECT_TRUE(specs.at(m + "gate.e_score_correction_bias").float32_in_checkpoint);
  EXPECT_THAT(specs.at(m + "experts.7.down_proj.weight").shape, ElementsAre(64, 32));
  EXPECT_THAT(specs.at(m + "shared_experts.gate_proj.weight").shape, ElementsAre(32, 64));
  EXPECT_THAT(specs.at("model.layers.0.mlp.up_proj.weight").shape, ElementsAre(128, 64));
  EXPECT_FALSE(specs.contains("model.layers.0.mlp.gate.weight"));
  EXPECT_THAT(specs.at("lm_head.weight").shape, ElementsAre(512, 64));
}

TEST(WeightLayoutTest, Qwen2MoeBiasesAndSharedExpert) {
  auto specs = ByName(ExpectedTensors(Load("tiny_qwen2_moe.json")));
  EXPECT_THAT(specs.at("model.layers.0.self_attn.q_proj.bias").shape, ElementsAre(64));
  EXPECT_THAT(specs.at("model.layers.0.self_attn.k_proj.bias").shape, ElementsAre(64));
  EXPECT_FALSE(specs.contains("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_THAT(specs.at("model.layers.1.mlp.shared_expert.down_proj.weight").shape,
              ElementsAre(64, 64));
  EXPECT_THAT(specs.at("model.layers.1.mlp.shared_expert_gate.weight").shape, ElementsAre(1, 64));
  EXPECT_THAT(specs.at("model.layers.3.mlp.gate_proj.weight").shape, ElementsAre(128, 64));
}

TEST(WeightLayoutTest, Qwen3MoeQkNormAndHeadDim) {
  auto specs = ByName(ExpectedTensors(Load("tiny_qwen3_moe.json")));
  EXPECT_THAT(specs.at("model.layers.0.self_attn.q_proj.weight").shape, ElementsAre(128, 64));
  EXPECT_THAT(specs.at("model.layers.0.self_attn.k_proj.weight").shape, ElementsAre(64, 64));
  EXPECT_THAT(specs.at("model.layers.0.self_attn.o_proj.weight").shape, ElementsAre(64, 128));
  EXPECT_THAT(specs.at("model.layers.0.self_attn.q_norm.weight").shape, ElementsAre(32));
  EXPECT_FALSE(specs.contains("model.layers.0.self_attn.q_proj.bias"));
}

TEST(WeightLayoutTest, MixtralExpertNames) {
  auto specs = ByName(ExpectedTensors(Load("tiny_mixtral.json")));
  EXPECT_THAT(specs.at("model.layers.1.block_sparse_moe.gate.weight").shape, ElementsAre(4, 64));
  EXPECT_THAT(specs.at("model.layers.1.block_sparse_moe.experts.3.w1.weight").shape,
              ElementsAre(96, 64));
  EXPECT_THAT(specs.at("model.layers.1.block_sparse_moe.experts.3.w2.weight").shape,
              ElementsAre(64, 96));
  EXPECT_THAT(specs.at("model.layers.1.block_sparse_moe.experts.3.w3.weight").shape,
              ElementsAre(96, 64));
}

TEST(WeightLayoutTest, TiedLlamaHasNoLmHead) {
  auto specs = ByName(ExpectedTensors(Load("tiny_llama.json")));
  EXPECT_FALSE(specs.contains("lm_head.weight"));
  EXPECT_THAT(specs.at("model.layers.1.self_attn.k_proj.weight").shape, ElementsAre(32, 64));
}

// The published DeepSeek-V3 fp8 checkpoint: kv_a_proj_with_mqa [576, 7168] has a [5, 56] scale.
TEST(WeightLayoutTest, DeepseekV3Fp8Scales) {
  ModelConfig config = Load("deepseek_v3.json");
  auto list = ExpectedTensors(config);
  auto specs = ByName(list);
  const std::string a = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";
  EXPECT_TRUE(specs.at(a).fp8_block_quantized);
  EXPECT_EQ(CheckpointDType(specs.at(a), config.torch_dtype), DType::kF8E4M3);
  EXPECT_THAT(specs.at(a + "_scale_inv").shape, ElementsAre(5, 56));
  EXPECT_EQ(CheckpointDType(specs.at(a + "_scale_inv"), config.torch_dtype), DType::kF32);
  EXPECT_THAT(specs.at("model.layers.5.mlp.experts.255.down_proj.weight_scale_inv").shape,
              ElementsAre(56, 16));
  // Routers, norms and embeddings stay bf16.
  EXPECT_FALSE(specs.at("model.layers.5.mlp.gate.weight").fp8_block_quantized);
  EXPECT_FALSE(specs.contains("model.layers.5.mlp.gate.weight_scale_inv"));
  EXPECT_EQ(CheckpointDType(specs.at("lm_head.weight"), config.torch_dtype), DType::kBF16);
  EXPECT_FALSE(specs.contains("model.layers.61.mlp.gate.weight"));
  // Each quantized weight is directly followed by its scale.
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].fp8_block_quantized) {
      ASSERT_LT(i + 1, list.size());
      EXPECT_EQ(list[i + 1].name, list[i].name + "_scale_inv");
    }
  }
}

// Qwen3-FP8 and DeepSeek-style configs name modules left in the checkpoint dtype; those have no
// scale, every other linear weight stays e4m3 (published configs list routers and lm_head; here
// a whole layer's attention, one projection by suffix and one expert by regex).
TEST(WeightLayoutTest, ModulesToNotConvertStayInTheCheckpointDtype) {
  ModelConfig config = Load("deepseek_v3.json");
  config.fp8_quantization->modules_to_not_convert = {"lm_head", "model.layers.1.self_attn",
                                                     "shared_experts.down_proj",
                                                     "model.layers.4.mlp.experts.1[0-9]"};
  ASSERT_TRUE(config.Validate().ok()) << config.Validate();
  auto specs = ByName(ExpectedTensors(config));
  auto fp8 = [&](const std::string& module) {
    const TensorSpec& s = specs.at(module + ".weight");
    EXPECT_EQ(specs.contains(module + ".weight_scale_inv"), s.fp8_block_quantized) << module;
    return s.fp8_block_quantized;
  };
  EXPECT_FALSE(fp8("model.layers.1.self_attn.q_a_proj"));
  EXPECT_FALSE(fp8("model.layers.1.self_attn.o_proj"));
  EXPECT_EQ(CheckpointDType(specs.at("model.layers.1.self_attn.o_proj.weight"), config.torch_dtype),
            DType::kBF16);
  EXPECT_TRUE(fp8("model.layers.0.self_attn.o_proj"));
  EXPECT_TRUE(fp8("model.layers.11.self_attn.o_proj"));  // "layers.1" ends at a dot, not "11"
  EXPECT_FALSE(fp8("model.layers.5.mlp.shared_experts.down_proj"));
  EXPECT_TRUE(fp8("model.layers.5.mlp.shared_experts.up_proj"));
  EXPECT_FALSE(fp8("model.layers.4.mlp.experts.12.gate_proj"));
  EXPECT_TRUE(fp8("model.layers.4.mlp.experts.1.gate_proj"));
  EXPECT_TRUE(fp8("model.layers.4.mlp.experts.120.gate_proj"));  // the regex ends at a dot
  EXPECT_TRUE(fp8("model.layers.5.mlp.experts.12.gate_proj"));
}

TEST(ModuleFilterTest, MatchesAsTransformersDoes) {
  auto filter =
      ModuleFilter::Create({"model.layers.1", "mlp.gate", "o_proj", "layers\\.[2-3]\\.mlp"});
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_TRUE(filter->Excludes("model.layers.1"));
  EXPECT_TRUE(filter->Excludes("model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(filter->Excludes("model.layers.11.self_attn.q_proj"));
  EXPECT_TRUE(filter->Excludes("model.layers.7.mlp.gate"));  // suffix
  EXPECT_FALSE(filter->Excludes("model.layers.7.mlp.gate_proj"));
  EXPECT_TRUE(filter->Excludes("model.layers.7.self_attn.o_proj"));
  EXPECT_FALSE(filter->Excludes("model.layers.7.self_attn.q_proj"));
  // A regex matches from the start of the name only: "layers.[2-3].mlp" is not a prefix of
  // "model.layers.2.mlp...", so only names that start with it are excluded.
  EXPECT_FALSE(filter->Excludes("model.layers.2.mlp.experts.0.up_proj"));
  EXPECT_TRUE(filter->Excludes("layers.3.mlp.experts.0.up_proj"));
  EXPECT_FALSE(ModuleFilter().Excludes("lm_head"));
}

}  // namespace
}  // namespace expertmesh::model
