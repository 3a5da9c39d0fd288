#include "model/config/model_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace expertmesh::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string DataDir() { return std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data"; }

absl::StatusOr<ModelConfig> LoadData(const std::string& file) {
  // LoadModelConfig reads <dir>/config.json; the test data are named per model, so parse here.
  const std::string path = DataDir() + "/" + file;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(path);
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) text.append(buffer, n);
  std::fclose(f);
  return ParseModelConfig(nlohmann::json::parse(text), path);
}

TEST(ArchitectureTest, NamesRoundTrip) {
  for (Architecture arch : AllArchitectures()) {
    EXPECT_EQ(ArchitectureFromName(ArchitectureName(arch)), arch);
  }
  EXPECT_EQ(ArchitectureFromName("DeepseekV3ForCausalLM"), Architecture::kDeepseekV3);
  EXPECT_EQ(ArchitectureFromName("GPT2LMHeadModel"), std::nullopt);
  EXPECT_EQ(AllArchitectures().size(), 6u);
}

TEST(ModelConfigTest, DeepseekV3Published) {
  auto c = LoadData("deepseek_v3.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kDeepseekV3);
  EXPECT_EQ(c->hidden_size, 7168);
  EXPECT_EQ(c->num_hidden_layers, 61);
  EXPECT_EQ(c->num_experts, 256);
  EXPECT_EQ(c->num_experts_per_tok, 8);
  EXPECT_EQ(c->n_shared_experts, 1);
  EXPECT_EQ(c->shared_expert_intermediate_size, 2048);
  EXPECT_EQ(c->scoring_func, MoeScoring::kSigmoid);
  EXPECT_EQ(c->topk_method, TopkMethod::kNoauxTc);
  EXPECT_TRUE(c->e_score_correction_bias);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_EQ(c->n_group, 8);
  EXPECT_EQ(c->topk_group, 4);
  EXPECT_DOUBLE_EQ(c->routed_scaling_factor, 2.5);
  EXPECT_EQ(c->q_lora_rank, 1536);
  EXPECT_EQ(c->kv_lora_rank, 512);
  EXPECT_EQ(c->head_dim, 192);
  EXPECT_EQ(c->v_head_dim, 128);
  EXPECT_EQ(c->ValueHeadDim(), 128);
  EXPECT_TRUE(c->UsesMla());
  EXPECT_EQ(c->num_nextn_predict_layers, 1);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 40);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c->rope_scaling.mscale_all_dim, 1.0);
  ASSERT_TRUE(c->fp8_quantization.has_value());
  EXPECT_EQ(c->fp8_quantization->block_rows, 128);
  EXPECT_EQ(c->fp8_quantization->block_cols, 128);
  EXPECT_EQ(c->torch_dtype, DType::kBF16);
  EXPECT_FALSE(c->IsMoeLayer(2));
  EXPECT_TRUE(c->IsMoeLayer(3));
  EXPECT_TRUE(c->IsMoeLayer(60));
  EXPECT_FALSE(c->IsMoeLayer(61));  // the MTP layer is not part of the model
  EXPECT_EQ(c->NumMoeLayers(), 58);
}

TEST(ModelConfigTest, DeepseekV2LitePublished) {
  auto c = LoadData("deepseek_v2_lite.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kDeepseekV2);
  EXPECT_EQ(c->q_lora_rank, std::nullopt);
  EXPECT_EQ(c->topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(c->scoring_func, MoeScoring::kSoftmax);
  EXPECT_FALSE(c->e_score_correction_bias);
  EXPECT_EQ(c->shared_expert_intermediate_size, 2 * 1408);
  EXPECT_DOUBLE_EQ(c->rope_scaling.mscale, 0.707);
  EXPECT_EQ(c->NumMoeLayers(), 26);
  EXPECT_FALSE(c->fp8_quantization.has_value());
  EXPECT_EQ(c->bos_token_id, 100000);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(100001));
}

TEST(ModelConfigTest, Qwen3MoePublished) {
  auto c = LoadData("qwen3_30b_a3b.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kQwen3Moe);
  EXPECT_EQ(c->head_dim, 128);  // explicit, != hidden / heads = 64
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_FALSE(c->o_proj_bias);
  EXPECT_EQ(c->num_experts, 128);
  EXPECT_EQ(c->moe_intermediate_size, 768);
  EXPECT_EQ(c->shared_expert_intermediate_size, 0);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->sliding_window, std::nullopt);
  EXPECT_EQ(c->NumMoeLayers(), 48);
}

TEST(ModelConfigTest, Qwen2MoePublished) {
  auto c = LoadData("qwen1.5_moe_a2.7b.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kQwen2Moe);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->o_proj_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_TRUE(c->shared_expert_gate);
  EXPECT_EQ(c->shared_expert_intermediate_size, 5632);
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_EQ(c->sliding_window, std::nullopt);  // use_sliding_window is false
}

TEST(ModelConfigTest, MixtralPublished) {
  auto c = LoadData("mixtral_8x7b.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kMixtral);
  EXPECT_EQ(c->num_experts, 8);
  EXPECT_EQ(c->num_experts_per_tok, 2);
  EXPECT_EQ(c->moe_intermediate_size, 14336);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_TRUE(c->IsMoeLayer(0));
}

TEST(ModelConfigTest, LlamaPublished) {
  auto c = LoadData("llama3_8b.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->IsMoe());
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);

  auto c31 = LoadData("llama3.1_8b.json");
  ASSERT_TRUE(c31.ok()) << c31.status();
  EXPECT_EQ(c31->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c31->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c31->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c31->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_THAT(c31->eos_token_ids, ElementsAre(128001, 128008, 128009));
}

TEST(ModelConfigTest, TinyQwen2MoeLayerPlacement) {
  auto c = LoadData("tiny_qwen2_moe.json");
  ASSERT_TRUE(c.ok()) << c.status();
  // decoder_sparse_step 2: layers 1 and 3 are sparse, but 3 is in mlp_only_layers.
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_FALSE(c->IsMoeLayer(2));
  EXPECT_FALSE(c->IsMoeLayer(3));
}

// Both key styles give the same config.
TEST(ModelConfigTest, Transformers5KeysMatchPublishedKeys) {
  for (const auto& [old_file, new_file] :
       {std::pair{"tiny_deepseek_v3.json", "tiny_deepseek_v3_tf5.json"},
        std::pair{"tiny_qwen3_moe.json", "tiny_qwen3_moe_tf5.json"}}) {
    SCOPED_TRACE(new_file);
    auto a = LoadData(old_file);
    auto b = LoadData(new_file);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->architecture, b->architecture);
    EXPECT_DOUBLE_EQ(a->rope_theta, b->rope_theta);
    EXPECT_EQ(a->rope_scaling.type, b->rope_scaling.type);
    EXPECT_DOUBLE_EQ(a->rope_scaling.factor, b->rope_scaling.factor);
    EXPECT_EQ(a->rope_scaling.original_max_position_embeddings,
              b->rope_scaling.original_max_position_embeddings);
    EXPECT_EQ(a->torch_dtype, b->torch_dtype);
    EXPECT_EQ(a->head_dim, b->head_dim);
    EXPECT_EQ(a->topk_method, b->topk_method);
    EXPECT_EQ(a->scoring_func, b->scoring_func);
    EXPECT_EQ(a->e_score_correction_bias, b->e_score_correction_bias);
  }
}

TEST(ModelConfigTest, LoadModelConfigNamesMissingFile) {
  auto c = LoadModelConfig("/nonexistent/model");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/model/config.json"));
}

}  // namespace
}  // namespace expertmesh::model
