#include "model/plan/checkpoint_check.h"

#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/config/weight_layout.h"
#include "tests/model/safetensors/safetensors_writer.h"

namespace expertmesh::model {
namespace {

using ::testing::HasSubstr;
using testing::TestTensor;

ModelConfig Load(const std::string& file) {
  const std::string path = std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data/" + file;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseModelConfig(nlohmann::json::parse(text.str()), path);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// Zero-filled tensors exactly as ExpectedTensors describes them.
std::vector<TestTensor> ExpectedZeros(const ModelConfig& config) {
  std::vector<TestTensor> out;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    const DType dtype = CheckpointDType(spec, config.torch_dtype);
    out.push_back({spec.name, dtype, spec.shape,
                   std::string(static_cast<size_t>(spec.NumElements()) * DTypeSize(dtype), '\0')});
  }
  return out;
}

struct CheckCase {
  std::string name;
  std::string config;
  std::function<void(std::vector<TestTensor>&)> edit;
  std::string expected;  // empty: must pass
};
void PrintTo(const CheckCase& c, std::ostream* os) { *os << c.name; }

class CheckpointCheckTest : public ::testing::TestWithParam<CheckCase> {};

TEST_P(CheckpointCheckTest, Check) {
  const CheckCase& c = GetParam();
  ModelConfig config = Load(c.config);
  std::vector<TestTensor> tensors = ExpectedZeros(config);
  c.edit(tensors);
  const std::string dir = testing::ScratchDir("check_" + c.name);
  testing::WriteFile(dir + "/model.safetensors", testing::BuildFile(tensors));
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::Status status = CheckCheckpointAgainstConfig(**ckpt, config);
  if (c.expected.empty()) {
    EXPECT_TRUE(status.ok()) << status;
  } else {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(dir));
    EXPECT_THAT(status.message(), HasSubstr(c.expected));
  }
}

void Erase(std::vector<TestTensor>& t, const std::string& name) {
  std::erase_if(t, [&](const TestTensor& x) { return x.name == name; });
}
TestTensor& Find(std::vector<TestTensor>& t, const std::string& name) {
  for (TestTensor& x : t) {
    if (x.name == name) return x;
  }
  ADD_FAILURE() << "no " << name;
  return t.front();
}

INSTANTIATE_TEST_SUITE_P(
    All, CheckpointCheckTest,
    ::testing::Values(
        CheckCase{"LlamaOk", "tiny_llama.json", [](auto&) {}, ""},
        CheckCase{"MixtralOk", "tiny_mixtral.json", [](auto&) {}, ""},
        CheckCase{"Qwen2MoeOk", "tiny_qwen2_moe.json", [](auto&) {}, ""},
        CheckCase{"Qwen3MoeOk", "tiny_qwen3_moe.json", [](auto&) {}, ""},
        CheckCase{"DeepseekV2Ok", "tiny_deepseek_v2.json", [](auto&) {}, ""},
        CheckCase{"DeepseekV3Ok", "tiny_deepseek_v3.json", [](auto&) {}, ""},
        CheckCase{"MtpLayerTolerated", "tiny_deepseek_v3.json",
                  [](auto& t) {
                    t.push_back({"model.layers.3.eh_proj.weight", DType::kBF16, {2}, "abcd"});
                  },
                  ""},
        CheckCase{"MissingExpert", "tiny_qwen3_moe.json",
                  [](auto& t) {
                    Erase(t, "model.layers.1.mlp.experts.5.up_proj.weight");
                    Erase(t, "model.norm.weight");
                  },
                  "missing tensor 'model.layers.1.mlp.experts.5.up_proj.weight' and 1 more"},
        CheckCase{"MissingLmHead", "tiny_mixtral.json", [](auto& t) { Erase(t, "lm_head.weight"); },
                  "missing tensor 'lm_head.weight'"},
        CheckCase{"ShapeMismatch", "tiny_deepseek_v3.json",
                  [](auto& t) {
                    TestTensor& x = Find(t, "model.layers.2.self_attn.kv_b_proj.weight");
                    x.shape = {64, 64};
                  },
                  "'model.layers.2.self_attn.kv_b_proj.weight' has shape [64, 64] but "
                  "DeepseekV3ForCausalLM config.json implies [128, 32]"},
        CheckCase{"DtypeMismatch", "tiny_llama.json",
                  [](auto& t) {
                    TestTensor& x = Find(t, "model.norm.weight");
                    x.dtype = DType::kF16;
                  },
                  "'model.norm.weight' has dtype F16 but config.json implies BF16"},
        CheckCase{"BiasMustBeF32", "tiny_deepseek_v3.json",
                  [](auto& t) {
                    TestTensor& x = Find(t, "model.layers.1.mlp.gate.e_score_correction_bias");
                    x.dtype = DType::kBF16;
                    x.bytes.resize(x.bytes.size() / 2);
                  },
                  "has dtype BF16 but config.json implies F32"},
        CheckCase{"GptqOk", "tiny_qwen3_moe_gptq.json", [](auto&) {}, ""},
        CheckCase{"Fp8ChannelOk", "tiny_qwen3_moe_fp8_channel.json", [](auto&) {}, ""},
        CheckCase{"KimiInt4Ok", "tiny_deepseek_v3_int4.json", [](auto&) {}, ""},
        // AutoGPTQ writes g_idx and a bias for every layer; GPTQModel may leave g_idx out.
        CheckCase{"GptqWithoutGIdxAndBias", "tiny_qwen3_moe_gptq.json",
                  [](auto& t) {
                    Erase(t, "model.layers.0.self_attn.q_proj.g_idx");
                    Erase(t, "model.layers.0.self_attn.q_proj.bias");
                  },
                  ""},
        CheckCase{"GptqScalesInBf16", "tiny_qwen3_moe_gptq.json",
                  [](auto& t) {
                    Find(t, "model.layers.1.mlp.experts.2.down_proj.scales").dtype = DType::kBF16;
                  },
                  ""},
        CheckCase{"GptqScalesAsInt", "tiny_qwen3_moe_gptq.json",
                  [](auto& t) {
                    Find(t, "model.layers.1.mlp.experts.2.down_proj.scales").dtype = DType::kI16;
                  },
                  "'model.layers.1.mlp.experts.2.down_proj.scales' has dtype I16 but config.json "
                  "implies F32, BF16 or F16"},
        CheckCase{"GptqMissingQzeros", "tiny_qwen3_moe_gptq.json",
                  [](auto& t) { Erase(t, "model.layers.1.mlp.experts.2.down_proj.qzeros"); },
                  "missing tensor 'model.layers.1.mlp.experts.2.down_proj.qzeros'"},
        CheckCase{"CtMissingWeightShape", "tiny_deepseek_v3_int4.json",
                  [](auto& t) { Erase(t, "model.layers.1.mlp.experts.0.up_proj.weight_shape"); },
                  "missing tensor 'model.layers.1.mlp.experts.0.up_proj.weight_shape'"},
        CheckCase{"CtPackedNotInt32", "tiny_deepseek_v3_int4.json",
                  [](auto& t) {
                    Find(t, "model.layers.1.mlp.experts.0.up_proj.weight_packed").dtype =
                        DType::kF32;
                  },
                  "weight_packed' has dtype F32 but config.json implies I32"},
        CheckCase{"Unexpected", "tiny_llama.json",
                  [](auto& t) {
                    t.push_back({"model.layers.0.mlp.extra.weight", DType::kBF16, {1}, "ab"});
                  },
                  "unexpected tensor 'model.layers.0.mlp.extra.weight'"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace expertmesh::model
