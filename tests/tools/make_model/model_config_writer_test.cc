#include "tools/make_model/model_config_writer.h"

#include "gtest/gtest.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "tools/make_model/make_model.h"
#include "tools/make_model/model_shape.h"

namespace expertmesh::make_model {
namespace {

using model::Architecture;

uint64_t CheckpointBytes(const model::ModelConfig& config) {
  uint64_t bytes = 0;
  for (const model::TensorSpec& spec : model::ExpectedTensors(config)) {
    bytes += static_cast<uint64_t>(spec.NumElements()) *
             DTypeSize(model::CheckpointDType(spec, DType::kBF16));
  }
  return bytes;
}

// Every preset of every architecture gives a config that the loader accepts, with the sizes
// the presets promise (checked without writing the weights).
TEST(ModelConfigWriterTest, EveryPresetOfEveryArchitectureParses) {
  SpecialTokenIds ids{.bos = 2048, .eos = 2049, .stop_ids = {2049, 2050}, .pad = 2051};
  for (Architecture arch : model::AllArchitectures()) {
    for (const std::string& size : PresetNames()) {
      SCOPED_TRACE(std::string(model::ArchitectureName(arch)) + " " + size);
      absl::StatusOr<ModelShape> shape = PresetShape(size);
      ASSERT_TRUE(shape.ok());
      const int64_t vocab = PaddedVocabSize(shape->bpe_vocab_size + 5);
      const nlohmann::ordered_json json = BuildConfigJson(arch, *shape, vocab, ids, DType::kBF16);
      absl::StatusOr<model::ModelConfig> config =
          model::ParseModelConfig(nlohmann::json(json), "test config.json");
      ASSERT_TRUE(config.ok()) << config.status() << "\n" << json.dump(2);
      EXPECT_EQ(config->architecture, arch);
      EXPECT_EQ(config->num_hidden_layers, shape->num_layers);
      EXPECT_EQ(config->vocab_size, vocab);
      EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{2049, 2050}));
      const uint64_t bytes = CheckpointBytes(*config);
      if (size == "tiny") {
        EXPECT_LT(bytes, 10'000'000u);
      }
      if (size == "large" && arch == Architecture::kQwen3Moe) {
        EXPECT_GT(bytes, 2'000'000'000u);
        EXPECT_LT(bytes, 4'000'000'000u);
      }
    }
  }
}

TEST(ModelConfigWriterTest, PublishedKeyStyle) {
  SpecialTokenIds ids{.bos = 1, .eos = 2, .stop_ids = {2}, .pad = 3};
  const ModelShape shape = *PresetShape("tiny");
  const auto v3 = BuildConfigJson(Architecture::kDeepseekV3, shape, 64, ids, DType::kBF16);
  EXPECT_EQ(v3["model_type"], "deepseek_v3");
  EXPECT_EQ(v3["architectures"][0], "DeepseekV3ForCausalLM");
  EXPECT_EQ(v3["torch_dtype"], "bfloat16");
  EXPECT_EQ(v3["rope_scaling"]["type"], "yarn");
  EXPECT_EQ(v3["topk_method"], "noaux_tc");
  EXPECT_EQ(v3["scoring_func"], "sigmoid");
  EXPECT_EQ(v3["eos_token_id"], 2);
  EXPECT_FALSE(v3.contains("rope_parameters"));
  const auto v2 = BuildConfigJson(Architecture::kDeepseekV2, shape, 64, ids, DType::kF32);
  EXPECT_TRUE(v2["q_lora_rank"].is_null());
  EXPECT_EQ(v2["torch_dtype"], "float32");
  const auto llama = BuildConfigJson(Architecture::kLlama, shape, 64, ids, DType::kBF16);
  EXPECT_EQ(llama["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(llama["tie_word_embeddings"], true);
  const auto qwen2 = BuildConfigJson(Architecture::kQwen2Moe, shape, 64, ids, DType::kBF16);
  EXPECT_EQ(qwen2["shared_expert_intermediate_size"], 4 * shape.moe_intermediate_size);
  EXPECT_EQ(PaddedVocabSize(2048 + 8), 2112);
  EXPECT_EQ(PaddedVocabSize(128), 128);
}

TEST(ModelShapeTest, OverridesAreValidated) {
  ShapeOverrides o;
  o.num_kv_heads = 3;
  EXPECT_EQ(ApplyOverrides(*PresetShape("tiny"), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = {};
  o.hidden_size = 0;
  EXPECT_FALSE(ApplyOverrides(*PresetShape("tiny"), o).ok());
  o = {};
  o.bpe_vocab_size = 100;
  EXPECT_FALSE(ApplyOverrides(*PresetShape("tiny"), o).ok());
  o = {};
  o.num_layers = 7;
  absl::StatusOr<ModelShape> s = ApplyOverrides(*PresetShape("small"), o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->num_layers, 7);
  EXPECT_EQ(s->hidden_size, PresetShape("small")->hidden_size);
  EXPECT_FALSE(PresetShape("huge").ok());
}

}  // namespace
}  // namespace expertmesh::make_model
