// quantization_config of published 4-bit and per-channel fp8 checkpoints: compressed-tensors
// pack-quantized (Kimi-K2, llm-compressor W4A16) and float-quantized (FP8_DYNAMIC), and GPTQ
// (Qwen's GPTQ-Int4 releases; GPTQModel's and AutoRound's quantized lm_head): what is parsed,
// which Linear layers each format quantizes, the tensors the checkpoint then holds, and the
// errors for everything else.
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/config/model_config.h"
#include "model/config/module_filter.h"
#include "model/config/weight_layout.h"

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

// Kimi-K2-Thinking's quantization_config (routed experts in int4 groups of 32).
Json KimiInt4() {
  return Json::parse(R"({
    "config_groups": {"group_0": {
      "input_activations": null, "output_activations": null, "targets": ["Linear"],
      "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": 32,
                  "num_bits": 4, "observer": "minmax", "observer_kwargs": {},
                  "strategy": "group", "symmetric": true, "type": "int"}}},
    "format": "pack-quantized",
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
               "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
    "kv_cache_scheme": null, "quant_method": "compressed-tensors",
    "quantization_status": "compressed"})");
}

// llm-compressor's FP8_DYNAMIC scheme on a Qwen3-MoE (routers and lm_head ignored).
Json Fp8Dynamic() {
  return Json::parse(R"({
    "config_groups": {"group_0": {
      "input_activations": {"dynamic": true, "num_bits": 8, "strategy": "token",
                            "symmetric": true, "type": "float"},
      "output_activations": null, "targets": ["Linear"],
      "weights": {"dynamic": false, "num_bits": 8, "observer": "minmax", "strategy": "channel",
                  "symmetric": true, "type": "float"}}},
    "format": "float-quantized", "ignore": ["lm_head", "re:.*mlp.gate$"],
    "quant_method": "compressed-tensors", "quantization_status": "compressed"})");
}

// Qwen's GPTQ-Int4 config.
Json QwenGptq() {
  return Json::parse(R"({"bits": 4, "group_size": 128, "damp_percent": 0.01, "desc_act": false,
    "static_groups": false, "sym": true, "true_sequential": true, "quant_method": "gptq"})");
}

absl::StatusOr<ModelConfig> Parse(const std::string& file, const Json& quantization) {
  Json json = Load(file);
  json["quantization_config"] = quantization;
  return ParseModelConfig(json, "dir/config.json");
}

std::map<std::string, TensorSpec> ByName(const std::vector<TensorSpec>& specs) {
  std::map<std::string, TensorSpec> out;
  for (const TensorSpec& s : specs) out.emplace(s.name, s);
  return out;
}

std::map<std::string, LinearFormat> Formats(const ModelConfig& c) {
  std::map<std::string, LinearFormat> out;
  for (const LinearSpec& l : LinearLayers(c)) out.emplace(l.module, l.format);
  return out;
}

TEST(CompressedTensorsMatcherTest, MatchesAsCompressedTensorsDoes) {
  auto m = CompressedTensorsMatcher::Create({"lm_head", "re:.*mlp.gate$", "re:model.layers.1."});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->Matches("lm_head", true));
  EXPECT_FALSE(m->Matches("model.lm_head", true));  // exact names are whole names
  EXPECT_TRUE(m->Matches("model.layers.0.mlp.gate", true));
  EXPECT_FALSE(m->Matches("model.layers.0.mlp.gate_proj", true));  // "$" ends the regex
  // re.match: anchored at the start only, so a prefix selects everything below it ...
  EXPECT_TRUE(m->Matches("model.layers.1.self_attn.q_proj", true));
  EXPECT_TRUE(m->Matches("model.layers.12.self_attn.q_proj", true));    // '.' is any character
  EXPECT_FALSE(m->Matches("x.model.layers.1.self_attn.q_proj", true));  // ... but not inside

  auto linear = CompressedTensorsMatcher::Create({"Linear"});
  ASSERT_TRUE(linear.ok());
  EXPECT_TRUE(linear->Matches("model.layers.0.self_attn.o_proj", true));
  EXPECT_FALSE(linear->Matches("model.layers.0.mlp.gate", false));  // DeepSeek's MoEGate

  auto bad = CompressedTensorsMatcher::Create({"re:layers.(1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("re:layers.(1"));
}

TEST(QuantizationConfigTest, KimiPackQuantizedOnDeepseekV3) {
  auto c = Parse("tiny_deepseek_v3.json", KimiInt4());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->int4_quantization.has_value());
  EXPECT_FALSE(c->fp8_quantization.has_value());
  const Int4Quantization& q = *c->int4_quantization;
  EXPECT_EQ(q.format, Int4Quantization::Format::kCompressedTensors);
  EXPECT_EQ(q.group_size, 32);
  EXPECT_TRUE(q.symmetric);
  EXPECT_EQ(q.ignore.size(), 4u);

  // Only the routed experts are int4: attention, shared experts and the dense MLP of layer 0
  // are ignored, and DeepSeek's router is a MoEGate, not a Linear.
  auto formats = Formats(*c);
  EXPECT_EQ(formats.at("model.layers.1.mlp.experts.3.down_proj"),
            LinearFormat::kInt4CompressedTensors);
  EXPECT_EQ(formats.at("model.layers.1.self_attn.kv_b_proj"), LinearFormat::kPlain);
  EXPECT_EQ(formats.at("model.layers.1.mlp.shared_experts.up_proj"), LinearFormat::kPlain);
  EXPECT_EQ(formats.at("model.layers.0.mlp.gate_proj"), LinearFormat::kPlain);
  EXPECT_FALSE(formats.contains("model.layers.1.mlp.gate"));
  EXPECT_TRUE(formats.at("lm_head") == LinearFormat::kPlain);

  // compressed-tensors' pack_quantized: weight_packed I32 [out, in / 8], weight_scale [out,
  // in / group] in any float dtype, weight_shape I64 [2].
  auto specs = ByName(ExpectedTensors(*c));
  const std::string e = "model.layers.1.mlp.experts.3.down_proj";  // [64, 32]
  EXPECT_FALSE(specs.contains(e + ".weight"));
  const TensorSpec& packed = specs.at(e + ".weight_packed");
  EXPECT_EQ(packed.shape, (std::vector<int64_t>{64, 4}));
  EXPECT_EQ(CheckpointDType(packed, DType::kBF16), DType::kI32);
  EXPECT_EQ(packed.Parameters(), 64 * 32);
  const TensorSpec& scale = specs.at(e + ".weight_scale");
  EXPECT_EQ(scale.shape, (std::vector<int64_t>{64, 1}));
  EXPECT_EQ(CheckpointDType(scale, DType::kBF16), DType::kBF16);
  for (DType d : {DType::kBF16, DType::kF16, DType::kF32}) {
    EXPECT_TRUE(CheckpointDTypeMatches(scale, DType::kBF16, d));
  }
  EXPECT_FALSE(CheckpointDTypeMatches(scale, DType::kBF16, DType::kI32));
  EXPECT_EQ(scale.Parameters(), 0);
  EXPECT_EQ(scale.loaded_bytes, 64u * 4);
  const TensorSpec& shape = specs.at(e + ".weight_shape");
  EXPECT_EQ(shape.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(CheckpointDType(shape, DType::kBF16), DType::kI64);
  EXPECT_TRUE(specs.contains("model.layers.1.self_attn.kv_b_proj.weight"));
  EXPECT_TRUE(specs.contains("model.layers.1.mlp.gate.weight"));
}

TEST(QuantizationConfigTest, TargetsCanBeNames) {
  Json q = KimiInt4();
  q["ignore"] = Json::array();
  q["config_groups"]["group_0"]["targets"] = {"re:.*experts.*"};
  auto c = Parse("tiny_deepseek_v3.json", q);
  ASSERT_TRUE(c.ok()) << c.status();  // lm_head and the MoEGate are not targeted
  auto formats = Formats(*c);
  EXPECT_EQ(formats.at("model.layers.1.mlp.experts.0.gate_proj"),
            LinearFormat::kInt4CompressedTensors);
  EXPECT_EQ(formats.at("model.layers.1.mlp.shared_experts.gate_proj"),
            LinearFormat::kInt4CompressedTensors);
  EXPECT_EQ(formats.at("model.layers.1.self_attn.o_proj"), LinearFormat::kPlain);
}

TEST(QuantizationConfigTest, Fp8DynamicPerChannel) {
  auto c = Parse("tiny_qwen3_moe.json", Fp8Dynamic());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->fp8_quantization.has_value());
  EXPECT_TRUE(c->fp8_quantization->per_channel);
  EXPECT_EQ(c->fp8_quantization->activation_scheme, "dynamic");
  auto specs = ByName(ExpectedTensors(*c));
  const std::string w = "model.layers.0.self_attn.o_proj.weight";  // [64, 128]
  EXPECT_TRUE(specs.at(w).fp8_block_quantized);
  EXPECT_EQ(CheckpointDType(specs.at(w), DType::kBF16), DType::kF8E4M3);
  EXPECT_EQ(specs.at(w + "_scale").shape, (std::vector<int64_t>{64, 1}));
  EXPECT_TRUE(specs.at(w + "_scale").any_float_dtype);
  EXPECT_FALSE(specs.contains(w + "_scale_inv"));
  EXPECT_FALSE(specs.at("model.layers.0.mlp.gate.weight").fp8_block_quantized);
  EXPECT_FALSE(specs.at("lm_head.weight").fp8_block_quantized);
}

TEST(QuantizationConfigTest, QwenGptqInt4) {
  auto c = Parse("qwen3_30b_a3b.json", QwenGptq());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->int4_quantization.has_value());
  const Int4Quantization& q = *c->int4_quantization;
  EXPECT_EQ(q.format, Int4Quantization::Format::kGptq);
  EXPECT_EQ(q.group_size, 128);
  EXPECT_TRUE(q.symmetric);
  EXPECT_FALSE(q.act_order);
  EXPECT_TRUE(q.gptq_zero_minus_one);

  // Every Linear of the decoder layers; never the router or lm_head.
  auto formats = Formats(*c);
  EXPECT_EQ(formats.at("model.layers.0.self_attn.q_proj"), LinearFormat::kInt4Gptq);
  EXPECT_EQ(formats.at("model.layers.47.mlp.experts.127.down_proj"), LinearFormat::kInt4Gptq);
  EXPECT_EQ(formats.at("model.layers.0.mlp.gate"), LinearFormat::kPlain);
  EXPECT_EQ(formats.at("lm_head"), LinearFormat::kPlain);

  // AutoGPTQ's QuantLinear: qweight [in / 8, out], qzeros [in / group, out / 8], scales
  // [in / group, out] (f16), g_idx [in]; a bias of zeros may come with every layer.
  auto specs = ByName(ExpectedTensors(*c));
  const std::string e = "model.layers.0.mlp.experts.5.down_proj";  // [2048, 768]
  EXPECT_EQ(specs.at(e + ".qweight").shape, (std::vector<int64_t>{96, 2048}));
  EXPECT_EQ(CheckpointDType(specs.at(e + ".qweight"), DType::kBF16), DType::kI32);
  EXPECT_EQ(specs.at(e + ".qweight").Parameters(), 2048 * 768);
  EXPECT_EQ(specs.at(e + ".qzeros").shape, (std::vector<int64_t>{6, 256}));
  EXPECT_EQ(specs.at(e + ".qzeros").loaded_bytes, 0u);  // symmetric: no zero points kept
  EXPECT_EQ(specs.at(e + ".scales").shape, (std::vector<int64_t>{6, 2048}));
  EXPECT_EQ(CheckpointDType(specs.at(e + ".scales"), DType::kBF16), DType::kF16);
  EXPECT_EQ(specs.at(e + ".scales").loaded_bytes, 6u * 2048 * 4);
  EXPECT_EQ(specs.at(e + ".g_idx").shape, (std::vector<int64_t>{768}));
  EXPECT_TRUE(specs.at(e + ".g_idx").optional);
  EXPECT_TRUE(specs.at(e + ".bias").optional);
  EXPECT_EQ(specs.at(e + ".bias").shape, (std::vector<int64_t>{2048}));
  EXPECT_FALSE(specs.contains(e + ".weight"));
  EXPECT_TRUE(specs.contains("model.layers.0.mlp.gate.weight"));

  Json v2 = QwenGptq();
  v2["desc_act"] = true;
  v2["sym"] = false;
  v2["checkpoint_format"] = "gptq_v2";
  auto c2 = Parse("qwen3_30b_a3b.json", v2);
  ASSERT_TRUE(c2.ok()) << c2.status();
  EXPECT_TRUE(c2->int4_quantization->act_order);
  EXPECT_FALSE(c2->int4_quantization->symmetric);
  EXPECT_FALSE(c2->int4_quantization->gptq_zero_minus_one);
  auto specs2 = ByName(ExpectedTensors(*c2));
  EXPECT_FALSE(specs2.at(e + ".g_idx").optional);
  EXPECT_EQ(specs2.at(e + ".g_idx").loaded_bytes, 768u * 4);
  EXPECT_EQ(specs2.at(e + ".qzeros").loaded_bytes, 6u * 2048 * 4);
}

TEST(QuantizationConfigTest, GptqModulesInBlockToQuantize) {
  Json q = QwenGptq();
  q["modules_in_block_to_quantize"] = {{"self_attn.q_proj", "self_attn.k_proj"},
                                       {"mlp.experts.0.down_proj"}};
  auto c = Parse("qwen3_30b_a3b.json", q);
  ASSERT_TRUE(c.ok()) << c.status();
  auto formats = Formats(*c);
  EXPECT_EQ(formats.at("model.layers.3.self_attn.q_proj"), LinearFormat::kInt4Gptq);
  EXPECT_EQ(formats.at("model.layers.3.self_attn.o_proj"), LinearFormat::kPlain);
  EXPECT_EQ(formats.at("model.layers.3.mlp.experts.0.down_proj"), LinearFormat::kInt4Gptq);
  EXPECT_EQ(formats.at("model.layers.3.mlp.experts.1.down_proj"), LinearFormat::kPlain);
}

// A quantized lm_head: GPTQ `lm_head: true` (AutoRound writes it with a `dynamic` override
// "+:.*lm_head.*", GPTQModel with one keyed "lm_head"), in the layers' format and groups.
TEST(QuantizationConfigTest, GptqLmHead) {
  Json autoround = QwenGptq();
  autoround["lm_head"] = true;
  autoround["dynamic"] = {{"+:.*lm_head.*", {{"bits", 4}, {"group_size", 128}, {"sym", true}}}};
  Json gptqmodel = QwenGptq();
  gptqmodel["lm_head"] = true;
  gptqmodel["dynamic"] = {
      {"lm_head", {{"bits", 4}, {"group_size", 128}, {"sym", true}, {"desc_act", true}}}};
  Json bare = QwenGptq();
  bare["lm_head"] = true;
  for (const Json& q : {autoround, gptqmodel, bare}) {
    SCOPED_TRACE(q.dump());
    auto c = Parse("qwen3_30b_a3b.json", q);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(c->int4_quantization->gptq_lm_head);
    auto formats = Formats(*c);
    EXPECT_EQ(formats.at("lm_head"), LinearFormat::kInt4Gptq);
    EXPECT_EQ(formats.at("model.layers.0.mlp.gate"), LinearFormat::kPlain);  // routers never
    // GPTQModel's lm_head: qweight [hidden / 8, vocab], qzeros, scales, g_idx.
    auto specs = ByName(ExpectedTensors(*c));
    EXPECT_FALSE(specs.contains("lm_head.weight"));
    EXPECT_EQ(specs.at("lm_head.qweight").shape, (std::vector<int64_t>{256, 151936}));
    EXPECT_EQ(specs.at("lm_head.qweight").Parameters(), int64_t{151936} * 2048);
    EXPECT_EQ(specs.at("lm_head.qzeros").shape, (std::vector<int64_t>{16, 151936 / 8}));
    EXPECT_EQ(specs.at("lm_head.scales").shape, (std::vector<int64_t>{16, 151936}));
    EXPECT_EQ(specs.at("lm_head.g_idx").shape, (std::vector<int64_t>{2048}));
    EXPECT_TRUE(specs.at("lm_head.bias").optional);
  }

  // modules_in_block_to_quantize names modules inside the decoder layers: lm_head is outside.
  Json experts = bare;
  experts["modules_in_block_to_quantize"] = {{"mlp.experts.0.down_proj"}};
  auto c = Parse("qwen3_30b_a3b.json", experts);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Formats(*c).at("lm_head"), LinearFormat::kInt4Gptq);
  EXPECT_EQ(Formats(*c).at("model.layers.0.self_attn.q_proj"), LinearFormat::kPlain);

  // A negative rule leaves lm_head unquantized; without lm_head: true an override is moot.
  Json excluded = bare;
  excluded["dynamic"] = {{"-:lm_head", Json::object()}};
  c = Parse("qwen3_30b_a3b.json", excluded);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Formats(*c).at("lm_head"), LinearFormat::kPlain);
  EXPECT_TRUE(ByName(ExpectedTensors(*c)).contains("lm_head.weight"));
  Json moot = QwenGptq();
  moot["dynamic"] = {{"lm_head", {{"bits", 8}}}};
  c = Parse("qwen3_30b_a3b.json", moot);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Formats(*c).at("lm_head"), LinearFormat::kPlain);
}

// compressed-tensors quantizes lm_head when its targets select it and ignore does not name it.
TEST(QuantizationConfigTest, CompressedTensorsLmHead) {
  Json q = KimiInt4();
  q["ignore"] = {"re:.*mlp.gate$"};
  auto c = Parse("tiny_qwen3_moe.json", q);
  ASSERT_TRUE(c.ok()) << c.status();
  auto formats = Formats(*c);
  EXPECT_EQ(formats.at("lm_head"), LinearFormat::kInt4CompressedTensors);
  EXPECT_EQ(formats.at("model.layers.0.mlp.gate"), LinearFormat::kPlain);
  auto specs = ByName(ExpectedTensors(*c));
  EXPECT_FALSE(specs.contains("lm_head.weight"));
  EXPECT_EQ(specs.at("lm_head.weight_packed").shape, (std::vector<int64_t>{512, 8}));
  EXPECT_EQ(specs.at("lm_head.weight_scale").shape, (std::vector<int64_t>{512, 2}));
  EXPECT_EQ(specs.at("lm_head.weight_shape").shape, (std::vector<int64_t>{2}));

  // Targets that do not reach it leave it plain.
  q["config_groups"]["group_0"]["targets"] = {"re:.*experts.*"};
  c = Parse("tiny_qwen3_moe.json", q);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Formats(*c).at("lm_head"), LinearFormat::kPlain);

  // Tied weights have no lm_head module: the embedding serves, unquantized (as in vLLM).
  Json all = KimiInt4();
  all["ignore"] = Json::array();
  c = Parse("tiny_llama.json", all);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(Formats(*c).contains("lm_head"));
  EXPECT_TRUE(ByName(ExpectedTensors(*c)).contains("model.embed_tokens.weight"));
}

// A GPTQ lm_head the model does not have separately, or whose zero points do not pack.
TEST(QuantizationConfigTest, GptqLmHeadErrors) {
  Json json = Load("tiny_qwen3_moe.json");
  json["quantization_config"] = QwenGptq();
  json["quantization_config"]["group_size"] = 32;
  json["quantization_config"]["lm_head"] = true;
  ASSERT_TRUE(ParseModelConfig(json, "dir/config.json").ok())
      << ParseModelConfig(json, "dir/config.json").status();

  Json tied = json;
  tied["tie_word_embeddings"] = true;
  auto c = ParseModelConfig(tied, "dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("field 'tie_word_embeddings'"));
  EXPECT_THAT(c.status().message(), HasSubstr("quantization_config.lm_head"));
  tied["quantization_config"]["lm_head"] = false;
  EXPECT_TRUE(ParseModelConfig(tied, "dir/config.json").ok());

  Json odd_vocab = json;
  odd_vocab["vocab_size"] = 500;
  c = ParseModelConfig(odd_vocab, "dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("'quantization_config.bits'"));
  EXPECT_THAT(c.status().message(), HasSubstr("lm_head has 500 outputs"));
}

struct QuantErrorCase {
  std::string name;
  std::string file;
  std::function<Json()> quantization;
  std::string expected;
};

void PrintTo(const QuantErrorCase& c, std::ostream* os) { *os << c.name; }

class QuantizationErrorTest : public ::testing::TestWithParam<QuantErrorCase> {};

TEST_P(QuantizationErrorTest, NamesTheField) {
  const QuantErrorCase& c = GetParam();
  auto result = Parse(c.file, c.quantization());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("dir/config.json"));
  EXPECT_THAT(result.status().message(), HasSubstr(c.expected));
}

template <typename F>
std::function<Json()> Edit(Json (*base)(), F edit) {
  return [base, edit] {
    Json j = base();
    edit(j);
    return j;
  };
}

Json& Weights(Json& j) { return j["config_groups"]["group_0"]["weights"]; }

INSTANTIATE_TEST_SUITE_P(
    AllErrors, QuantizationErrorTest,
    ::testing::Values(
        QuantErrorCase{"UnknownFormat", "tiny_deepseek_v3.json",
                       Edit(KimiInt4, [](Json& j) { j["format"] = "marlin-24"; }),
                       "'quantization_config.format': unsupported 'marlin-24'"},
        QuantErrorCase{"Asymmetric", "tiny_deepseek_v3.json",
                       Edit(KimiInt4, [](Json& j) { Weights(j)["symmetric"] = false; }),
                       "'quantization_config.config_groups.group_0.weights.symmetric'"},
        QuantErrorCase{"EightBitPacked", "tiny_deepseek_v3.json",
                       Edit(KimiInt4, [](Json& j) { Weights(j)["num_bits"] = 8; }),
                       "'quantization_config.config_groups.group_0.weights.num_bits'"},
        QuantErrorCase{"ChannelInt4", "tiny_deepseek_v3.json",
                       Edit(KimiInt4, [](Json& j) { Weights(j)["strategy"] = "channel"; }),
                       "weights.strategy': unsupported 'channel'"},
        QuantErrorCase{"GroupNotMultipleOf32", "tiny_deepseek_v3.json",
                       Edit(KimiInt4, [](Json& j) { Weights(j)["group_size"] = 48; }),
                       "weights.group_size': unsupported 48"},
        QuantErrorCase{"GroupActOrder", "tiny_deepseek_v3.json",
                       Edit(KimiInt4, [](Json& j) { Weights(j)["actorder"] = "group"; }),
                       "weights.actorder'"},
        QuantErrorCase{"DynamicWeights", "tiny_deepseek_v3.json",
                       Edit(KimiInt4, [](Json& j) { Weights(j)["dynamic"] = true; }),
                       "weights.dynamic'"},
        QuantErrorCase{"TwoSchemes", "tiny_deepseek_v3.json",
                       Edit(KimiInt4,
                            [](Json& j) {
                              j["config_groups"]["group_1"] = j["config_groups"]["group_0"];
                              j["config_groups"]["group_1"]["weights"]["group_size"] = 128;
                            }),
                       "group_1.weights': differs from the weights of group_0"},
        QuantErrorCase{
            "ActivationsOnInt4", "tiny_deepseek_v3.json",
            Edit(KimiInt4,
                 [](Json& j) {
                   j["config_groups"]["group_0"]["input_activations"] = {{"dynamic", true}};
                 }),
            "group_0.input_activations'"},
        QuantErrorCase{"GroupDoesNotDivideLayer", "tiny_qwen3_moe.json",
                       Edit(KimiInt4,
                            [](Json& j) {
                              Weights(j)["group_size"] = 64;
                              j["ignore"] = {"lm_head", "re:.*mlp.gate$"};
                            }),
                       "64 does not divide the 32 input features of "
                       "model.layers.0.mlp.experts.0.down_proj"},
        QuantErrorCase{"RouterNotIgnored", "tiny_qwen3_moe.json",
                       Edit(KimiInt4, [](Json& j) { j["ignore"] = {"lm_head"}; }),
                       "'quantization_config.ignore': model.layers.0.mlp.gate (a router)"},
        QuantErrorCase{"LmHeadNotIgnored", "tiny_qwen3_moe.json",
                       Edit(Fp8Dynamic, [](Json& j) { j["ignore"] = {"re:.*mlp.gate$"}; }),
                       "'quantization_config.ignore': lm_head (lm_head)"},
        QuantErrorCase{"IgnoreNotARegex", "tiny_qwen3_moe.json",
                       Edit(Fp8Dynamic,
                            [](Json& j) {
                              j["ignore"] = {"lm_head", "re:(x"};
                            }),
                       "'quantization_config.ignore': module pattern 're:(x'"},
        QuantErrorCase{"Fp8TensorStrategy", "tiny_qwen3_moe.json",
                       Edit(Fp8Dynamic, [](Json& j) { Weights(j)["strategy"] = "tensor"; }),
                       "weights.strategy': unsupported 'tensor'"},
        QuantErrorCase{"Fp8StaticActivations", "tiny_qwen3_moe.json",
                       Edit(Fp8Dynamic,
                            [](Json& j) {
                              j["config_groups"]["group_0"]["input_activations"]["dynamic"] = false;
                            }),
                       "static activation scales"},
        QuantErrorCase{"GptqEightBits", "qwen3_30b_a3b.json",
                       Edit(QwenGptq, [](Json& j) { j["bits"] = 8; }),
                       "'quantization_config.bits': unsupported 8"},
        QuantErrorCase{"GptqPerRow", "qwen3_30b_a3b.json",
                       Edit(QwenGptq, [](Json& j) { j["group_size"] = -1; }),
                       "'quantization_config.group_size': unsupported -1 (one group per row)"},
        QuantErrorCase{"GptqMarlin", "qwen3_30b_a3b.json",
                       Edit(QwenGptq, [](Json& j) { j["checkpoint_format"] = "marlin"; }),
                       "'quantization_config.checkpoint_format': unsupported 'marlin'"},
        QuantErrorCase{"GptqDynamic", "qwen3_30b_a3b.json",
                       Edit(QwenGptq,
                            [](Json& j) {
                              j["dynamic"] = {{"-:.*mlp.*", {}}};
                            }),
                       "'quantization_config.dynamic'"},
        // GPTQModel's default for a quantized lm_head: 8 bits in groups of 32.
        QuantErrorCase{"GptqLmHeadEightBits", "qwen3_30b_a3b.json",
                       Edit(QwenGptq,
                            [](Json& j) {
                              j["lm_head"] = true;
                              j["dynamic"] = {{"lm_head",
                                               {{"bits", 8},
                                                {"group_size", 32},
                                                {"sym", true},
                                                {"desc_act", false},
                                                {"mse", 2.4}}}};
                            }),
                       "'quantization_config.dynamic.lm_head.bits': unsupported 8 for lm_head"},
        QuantErrorCase{"GptqLmHeadOtherGroup", "qwen3_30b_a3b.json",
                       Edit(QwenGptq,
                            [](Json& j) {
                              j["lm_head"] = true;
                              j["dynamic"] = {{"+:.*lm_head.*", {{"bits", 4}, {"group_size", 32}}}};
                            }),
                       "'quantization_config.dynamic.+:.*lm_head.*.group_size': 32 differs"},
        QuantErrorCase{"GptqDynamicAlsoOverridesLayers", "qwen3_30b_a3b.json",
                       Edit(QwenGptq,
                            [](Json& j) {
                              j["lm_head"] = true;
                              j["dynamic"] = {{"+:.*", {{"bits", 4}}}};
                            }),
                       "'quantization_config.dynamic': '+:.*' also overrides "
                       "model.layers.0.self_attn.q_proj"},
        QuantErrorCase{
            "GptqDynamicIncludesAndExcludesLmHead", "qwen3_30b_a3b.json",
            Edit(QwenGptq,
                 [](Json& j) {
                   j["lm_head"] = true;
                   j["dynamic"] = {{"+:lm_head", {{"bits", 4}}}, {"-:lm_head", Json::object()}};
                 }),
            "'quantization_config.dynamic': both"},
        QuantErrorCase{"GptqDynamicNotARegex", "qwen3_30b_a3b.json",
                       Edit(QwenGptq,
                            [](Json& j) {
                              j["dynamic"] = {{"+:(lm_head", {}}};
                            }),
                       "'quantization_config.dynamic': module pattern"},
        QuantErrorCase{"GptqGroupDoesNotDivideMla", "tiny_deepseek_v3.json",
                       Edit(QwenGptq, [](Json& j) { j["group_size"] = 32; }),
                       "'quantization_config.group_size': 32 does not divide the 48 input "
                       "features of model.layers.0.self_attn.q_b_proj"},
        QuantErrorCase{"UnknownMethod", "tiny_qwen3_moe.json",
                       [] { return Json{{"quant_method", "awq"}}; },
                       "'quantization_config.quant_method': unsupported quantization 'awq'"}),
    [](const ::testing::TestParamInfo<QuantErrorCase>& info) { return info.param.name; });

}  // namespace
}  // namespace expertmesh::model
