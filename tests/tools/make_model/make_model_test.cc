#include "tools/make_model/make_model.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "model/safetensors/checkpoint.h"
#include "tools/make_model/checkpoint_writer.h"

namespace expertmesh::make_model {
namespace {

namespace fs = std::filesystem;
using model::Architecture;

std::string ScratchDir(const std::string& name) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/make_model/" + name;
  fs::remove_all(dir);
  return dir;
}

std::string ReadAll(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFileToString(path);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : "";
}

float ElementAsFloat(const model::TensorView& t, int64_t i) {
  if (t.dtype == DType::kF32) {
    float v;
    std::memcpy(&v, t.data.data() + 4 * i, 4);
    return v;
  }
  uint16_t bits;
  std::memcpy(&bits, t.data.data() + 2 * i, 2);
  return Bf16ToFloat(bits);
}

class MakeModelArchTest : public ::testing::TestWithParam<Architecture> {};

TEST_P(MakeModelArchTest, TinyModelIsACompleteHuggingFaceDirectory) {
  const Architecture arch = GetParam();
  MakeModelOptions options;
  options.arch = arch;
  options.out_dir = ScratchDir(std::string(model::ArchitectureName(arch)));
  options.seed = 1;
  absl::StatusOr<MakeModelResult> result = MakeModel(options);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "generation_config.json"}) {
    EXPECT_TRUE(fs::is_regular_file(options.out_dir + "/" + f)) << f;
  }
  EXPECT_LT(result->weight_bytes, 10'000'000u);
  EXPECT_GT(result->num_merges, 1000);

  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(options.out_dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, arch);
  EXPECT_EQ(config->torch_dtype, DType::kBF16);
  EXPECT_EQ(config->vocab_size % 64, 0);
  EXPECT_GE(config->vocab_size, result->num_tokens);
  EXPECT_FALSE(config->eos_token_ids.empty());
  for (int64_t eos : config->eos_token_ids) EXPECT_LT(eos, result->num_tokens);
  if (arch == Architecture::kDeepseekV2 || arch == Architecture::kDeepseekV3) {
    EXPECT_EQ(config->rope_scaling.type, model::RopeScalingType::kYarn);
    EXPECT_TRUE(config->UsesMla());
  }
  EXPECT_EQ(config->e_score_correction_bias, arch == Architecture::kDeepseekV3);
  EXPECT_EQ(config->IsMoe(), arch != Architecture::kLlama);

  absl::StatusOr<std::unique_ptr<model::Checkpoint>> checkpoint =
      model::Checkpoint::Open(options.out_dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const std::vector<model::TensorSpec> expected = model::ExpectedTensors(*config);
  EXPECT_EQ((*checkpoint)->num_tensors(), expected.size());
  int64_t params = 0;
  for (const model::TensorSpec& spec : expected) {
    absl::StatusOr<model::TensorView> t = (*checkpoint)->Get(spec.name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->shape, spec.shape) << spec.name;
    EXPECT_EQ(t->dtype, model::CheckpointDType(spec, DType::kBF16)) << spec.name;
    params += spec.NumElements();
    const float first = ElementAsFloat(*t, 0);
    if (spec.name.ends_with("norm.weight")) {
      EXPECT_EQ(first, 1.0f) << spec.name;
    } else {
      // Random normal values: finite, small, and not all equal.
      bool varied = false;
      for (int64_t i = 0; i < t->NumElements(); ++i) {
        const float v = ElementAsFloat(*t, i);
        ASSERT_TRUE(std::isfinite(v) && std::fabs(v) < 0.1f) << spec.name << " " << v;
        varied = varied || v != first;
      }
      EXPECT_TRUE(varied || t->NumElements() == 1) << spec.name;
    }
  }
  EXPECT_EQ(params, result->num_parameters);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, MakeModelArchTest,
                         ::testing::ValuesIn(model::AllArchitectures()), [](const auto& info) {
                           return std::string(model::ArchitectureName(info.param));
                         });

TEST(MakeModelTest, SameSeedGivesTheSameBytesAndAnotherSeedDoesNot) {
  MakeModelOptions options;
  options.arch = Architecture::kDeepseekV3;
  options.seed = 11;
  options.out_dir = ScratchDir("seed-a");
  ASSERT_TRUE(MakeModel(options).ok());
  const std::string dir_a = options.out_dir;
  options.out_dir = ScratchDir("seed-b");
  ASSERT_TRUE(MakeModel(options).ok());
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "generation_config.json"}) {
    EXPECT_TRUE(ReadAll(dir_a + "/" + f) == ReadAll(options.out_dir + "/" + f)) << f;
  }
  options.seed = 12;
  options.out_dir = ScratchDir("seed-c");
  ASSERT_TRUE(MakeModel(options).ok());
  EXPECT_FALSE(ReadAll(dir_a + "/model.safetensors") ==
               ReadAll(options.out_dir + "/model.safetensors"));
  EXPECT_EQ(ReadAll(dir_a + "/tokenizer.json"), ReadAll(options.out_dir + "/tokenizer.json"));
}

TEST(MakeModelTest, ShardedCheckpointHasAnIndexCoveringEveryTensorOnce) {
  MakeModelOptions options;
  options.arch = Architecture::kQwen3Moe;
  options.seed = 3;
  options.out_dir = ScratchDir("unsharded");
  ASSERT_TRUE(MakeModel(options).ok());
  const std::string single = options.out_dir;
  options.out_dir = ScratchDir("sharded");
  options.shard_size = 300'000;
  absl::StatusOr<MakeModelResult> result = MakeModel(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(fs::exists(options.out_dir + "/model.safetensors"));

  absl::StatusOr<nlohmann::json> index =
      ReadJsonFile(options.out_dir + "/model.safetensors.index.json");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ((*index)["metadata"]["total_size"].get<uint64_t>(), result->weight_bytes);
  const nlohmann::json& weight_map = (*index)["weight_map"];
  std::set<std::string> shard_files;
  for (const auto& [name, file] : weight_map.items()) shard_files.insert(file.get<std::string>());
  EXPECT_GT(shard_files.size(), 2u);
  const std::string last = "model-0000" + std::to_string(shard_files.size()) + "-of-0000" +
                           std::to_string(shard_files.size()) + ".safetensors";
  EXPECT_TRUE(shard_files.count(last)) << last;
  for (const std::string& f : shard_files) {
    EXPECT_TRUE(fs::is_regular_file(options.out_dir + "/" + f)) << f;
    // A shard exceeds the limit only when it holds a single tensor that is itself larger.
    EXPECT_LE(fs::file_size(options.out_dir + "/" + f), 300'000u + 200'000u) << f;
  }

  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(options.out_dir);
  ASSERT_TRUE(config.ok());
  const std::vector<model::TensorSpec> expected = model::ExpectedTensors(*config);
  EXPECT_EQ(weight_map.size(), expected.size());
  absl::StatusOr<std::unique_ptr<model::Checkpoint>> sharded =
      model::Checkpoint::Open(options.out_dir);
  absl::StatusOr<std::unique_ptr<model::Checkpoint>> whole = model::Checkpoint::Open(single);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE((*sharded)->sharded());
  for (const model::TensorSpec& spec : expected) {
    ASSERT_TRUE(weight_map.contains(spec.name)) << spec.name;
    absl::StatusOr<model::TensorView> a = (*sharded)->Get(spec.name);
    absl::StatusOr<model::TensorView> b = (*whole)->Get(spec.name);
    ASSERT_TRUE(a.ok() && b.ok()) << spec.name;
    // Values depend on (seed, name) only, so sharding does not change them.
    ASSERT_EQ(a->data.size(), b->data.size());
    EXPECT_EQ(std::memcmp(a->data.data(), b->data.data(), a->data.size()), 0) << spec.name;
  }
}

TEST(MakeModelTest, PlanShardsKeepsOrderAndLimits) {
  const std::vector<TensorToWrite> t = {{"a", DType::kF32, {10}},
                                        {"b", DType::kF32, {10}},
                                        {"c", DType::kF32, {100}},
                                        {"d", DType::kF32, {5}}};
  const auto shards = PlanShards(t, 80);
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].size(), 2u);    // a + b = 80 bytes
  EXPECT_EQ(shards[1][0].name, "c");  // 400 bytes: a shard of its own
  EXPECT_EQ(shards[2][0].name, "d");
  EXPECT_EQ(PlanShards(t, 0).size(), 1u);
}

TEST(MakeModelTest, F32AndOverrides) {
  MakeModelOptions options;
  options.arch = Architecture::kMixtral;
  options.dtype = DType::kF32;
  options.overrides.num_layers = 3;
  options.overrides.num_experts = 4;
  options.overrides.bpe_vocab_size = 600;
  options.config_edits = {{"rope_theta", "12345.0"}};
  options.out_dir = ScratchDir("f32");
  absl::StatusOr<MakeModelResult> result = MakeModel(options);
  ASSERT_TRUE(result.ok()) << result.status();
  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(options.out_dir);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->num_hidden_layers, 3);
  EXPECT_EQ(config->num_experts, 4);
  EXPECT_EQ(config->torch_dtype, DType::kF32);
  EXPECT_EQ(config->rope_theta, 12345.0);
  EXPECT_EQ(config->vocab_size, 640);  // 600 BPE + 5 special tokens, padded to 64
  absl::StatusOr<std::unique_ptr<model::Checkpoint>> checkpoint =
      model::Checkpoint::Open(options.out_dir);
  ASSERT_TRUE(checkpoint.ok());
  absl::StatusOr<model::TensorView> t = (*checkpoint)->Get("model.embed_tokens.weight");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->dtype, DType::kF32);
}

TEST(MakeModelTest, EmbeddingKeepsTheRequestedVocabSizeBeyondWhatTheCorpusSupports) {
  MakeModelOptions options;
  options.arch = Architecture::kQwen3Moe;
  options.overrides.bpe_vocab_size = 20000;
  options.out_dir = ScratchDir("big-vocab");
  absl::StatusOr<MakeModelResult> result = MakeModel(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->num_merges, 8000);   // min_frequency 1 goes well past the common pairs
  EXPECT_LT(result->num_tokens, 20000);  // ... but ~92 KB of text cannot give 20k tokens
  EXPECT_EQ(result->vocab_size, 20032);  // 20000 + 3 special tokens, padded to 64
  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(options.out_dir);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->vocab_size, 20032);
}

TEST(MakeModelTest, RefusesANonEmptyDirectoryUnlessForced) {
  MakeModelOptions options;
  options.arch = Architecture::kLlama;
  options.out_dir = ScratchDir("occupied");
  fs::create_directories(options.out_dir);
  ASSERT_TRUE(WriteStringToFile(options.out_dir + "/notes.txt", "mine").ok());
  absl::StatusOr<MakeModelResult> result = MakeModel(options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(result.status().message().find("occupied"), std::string::npos);
  options.force = true;
  EXPECT_TRUE(MakeModel(options).ok());
  EXPECT_EQ(ReadAll(options.out_dir + "/notes.txt"), "mine");
}

TEST(MakeModelTest, BadOptionsGiveClearErrors) {
  MakeModelOptions options;
  options.out_dir = ScratchDir("bad");
  options.size = "enormous";
  EXPECT_NE(MakeModel(options).status().message().find("enormous"), std::string::npos);
  options.size = "tiny";
  options.overrides.num_experts_per_tok = 99;
  EXPECT_EQ(MakeModel(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.overrides = {};
  options.config_edits = {{"rope_theta", "{not json"}};
  EXPECT_EQ(MakeModel(options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseArchName("gpt2").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseArchName("deepseek-v3"), Architecture::kDeepseekV3);
  EXPECT_EQ(*ParseArchName("Qwen2MoeForCausalLM"), Architecture::kQwen2Moe);
  EXPECT_EQ(*ParseByteSize("500MB"), 500'000'000u);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), 1'610'612'736u);
  EXPECT_FALSE(ParseByteSize("lots").ok());
  EXPECT_FALSE(ParseByteSize("5 parsecs").ok());
}

}  // namespace
}  // namespace expertmesh::make_model
