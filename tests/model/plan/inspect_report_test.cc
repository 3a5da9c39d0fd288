#include "model/plan/inspect_report.h"

#include <filesystem>
#include <string>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/config/weight_layout.h"
#include "tests/model/safetensors/safetensors_writer.h"

namespace expertmesh::model {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string DataFile(const std::string& name) {
  return std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data/" + name;
}

std::string ModelDir(const std::string& name, const std::string& config) {
  const std::string dir = testing::ScratchDir("inspect_" + name);
  std::filesystem::copy_file(DataFile(config), dir + "/config.json");
  return dir;
}

TEST(InspectReportTest, ConfigOnlyPublishedModel) {
  const std::string dir = ModelDir("v3", "deepseek_v3.json");
  auto report = BuildInspectReport(dir, {.tp = 8, .ep = 4, .kv_tokens = 1000});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->checkpoint.ok());
  const std::string& t = report->text;
  EXPECT_THAT(t, HasSubstr("DeepseekV3ForCausalLM (deepseek_v3)"));
  EXPECT_THAT(t, HasSubstr("61 (58 MoE, 3 dense)"));
  EXPECT_THAT(t, HasSubstr("256 routed x 2048, top-8, sigmoid, noaux_tc (8 groups, keep 4)"));
  EXPECT_THAT(t, HasSubstr("671.03 B"));
  EXPECT_THAT(t, HasSubstr("none (config only)"));
  EXPECT_THAT(t, HasSubstr("tp=8, ep=4: 32 ranks"));
  EXPECT_THAT(t, HasSubstr("ep rank 3 (ranks 24..31) holds experts [192, 256)"));
}

// An int4 checkpoint says whether its lm_head is packed too.
TEST(InspectReportTest, Int4LmHead) {
  const std::string dir = ModelDir("gptq", "tiny_qwen3_moe_gptq.json");
  auto report = BuildInspectReport(dir, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->text, HasSubstr("int4 groups of 32 (GPTQ, symmetric)"));
  auto config = ReadJsonFile(dir + "/config.json");
  ASSERT_TRUE(config.ok());
  (*config)["quantization_config"]["lm_head"] = true;
  ASSERT_TRUE(WriteStringToFile(dir + "/config.json", config->dump()).ok());
  report = BuildInspectReport(dir, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->text, HasSubstr("int4 groups of 32 (GPTQ, symmetric, lm_head included)"));
}

// --quantize fp8 and --quantize-lm-head fp8 plan the weights as the worker loads them with those
// flags, and the header says so; the checkpoint's own bytes stay as stored.
TEST(InspectReportTest, PlansQuantizationAtLoad) {
  const std::string dir = ModelDir("a3b", "qwen3_30b_a3b.json");
  auto plain = BuildInspectReport(dir, {});
  auto quantized = BuildInspectReport(dir, {.at_load = {.fp8 = true, .fp8_lm_head = true}});
  ASSERT_TRUE(plain.ok() && quantized.ok());
  EXPECT_THAT(quantized->text,
              HasSubstr("bytes of rank 0, loaded with --quantize fp8 --quantize-lm-head fp8)"));
  EXPECT_THAT(plain->text, Not(HasSubstr("loaded with")));
  // Whole model as stored (bf16, 56.87 GiB), per rank in fp8 (28.74 GiB).
  EXPECT_THAT(plain->text, HasSubstr("56.87 GiB      56.87 GiB"));
  EXPECT_THAT(quantized->text, HasSubstr("56.87 GiB      28.74 GiB"));
}

TEST(InspectReportTest, ValidatesCheckpointAgainstConfig) {
  const std::string dir = ModelDir("tiny", "tiny_qwen3_moe.json");
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());
  std::vector<testing::TestTensor> tensors;
  for (const TensorSpec& spec : ExpectedTensors(*config)) {
    tensors.push_back({spec.name, DType::kBF16, spec.shape,
                       std::string(static_cast<size_t>(spec.NumElements()) * 2, '\0')});
  }
  testing::WriteFile(dir + "/model.safetensors", testing::BuildFile(tensors));
  auto report = BuildInspectReport(dir, {.tp = 2, .ep = 2, .kv_tokens = 10});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->checkpoint.ok()) << report->checkpoint;
  EXPECT_THAT(report->text, HasSubstr("matches config.json    yes"));
  EXPECT_THAT(report->text, HasSubstr("1 file, 69 tensors"));

  tensors.pop_back();  // drop lm_head
  testing::WriteFile(dir + "/model.safetensors", testing::BuildFile(tensors));
  report = BuildInspectReport(dir, {});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->checkpoint.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report->text, HasSubstr("NO: "));
  EXPECT_THAT(report->text, HasSubstr("missing tensor 'lm_head.weight'"));
}

TEST(InspectReportTest, Errors) {
  EXPECT_EQ(BuildInspectReport("/nonexistent", {}).status().code(), absl::StatusCode::kNotFound);
  const std::string dir = ModelDir("bad_tp", "mixtral_8x7b.json");
  EXPECT_THAT(BuildInspectReport(dir, {.tp = 3}).status().message(),
              HasSubstr("not divisible by tp 3"));
}

}  // namespace
}  // namespace expertmesh::model
