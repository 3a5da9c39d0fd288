// make-model's quantized checkpoints (--dtype int4-ct, int4-gptq, fp8-channel): accepted by the
// config parser and the checkpoint check for every architecture, tensors in the published dtypes
// and shapes (tests/golden/README.md, "Quantized checkpoints"), and values equal to the
// unquantized twin (same options and seed) quantized with model::QuantizeInt4Groups (int4) or
// amax / 448 per row (fp8); lm_head too with --quantize-lm-head. The packings are unpacked here
// from their published bit order, independently of the writer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "model/plan/checkpoint_check.h"
#include "model/safetensors/checkpoint.h"
#include "model/safetensors/int4_quantize.h"
#include "tools/make_model/make_model.h"
#include "tools/make_model/model_shape.h"

namespace expertmesh::make_model {
namespace {

namespace fs = std::filesystem;
using model::Architecture;
using model::LinearFormat;

std::string ScratchDir(const std::string& name) {
  const std::string dir =
      std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/make_model_quantized/" + name;
  fs::remove_all(dir);
  return dir;
}

const char* FormatName(LinearFormat f) {
  switch (f) {
    case LinearFormat::kInt4CompressedTensors:
      return "int4_ct";
    case LinearFormat::kInt4Gptq:
      return "int4_gptq";
    case LinearFormat::kFp8Channel:
      return "fp8_channel";
    default:
      return "plain";
  }
}

// The float dtype of the unquantized tensors: GPTQ checkpoints are float16.
DType FloatDType(LinearFormat f) {
  return f == LinearFormat::kInt4Gptq ? DType::kF16 : DType::kBF16;
}

// Every field of `s` as an override, so that a twin gets exactly the quantized model's shape.
ShapeOverrides Exactly(const ModelShape& s) {
  ShapeOverrides o;
  o.hidden_size = s.hidden_size;
  o.num_layers = s.num_layers;
  o.num_heads = s.num_heads;
  o.num_kv_heads = s.num_kv_heads;
  o.head_dim = s.head_dim;
  o.intermediate_size = s.intermediate_size;
  o.num_experts = s.num_experts;
  o.num_experts_per_tok = s.num_experts_per_tok;
  o.moe_intermediate_size = s.moe_intermediate_size;
  o.num_shared_experts = s.num_shared_experts;
  o.bpe_vocab_size = s.bpe_vocab_size;
  o.max_position_embeddings = s.max_position_embeddings;
  o.kv_lora_rank = s.kv_lora_rank;
  o.q_lora_rank = s.q_lora_rank;
  o.qk_nope_head_dim = s.qk_nope_head_dim;
  o.qk_rope_head_dim = s.qk_rope_head_dim;
  o.v_head_dim = s.v_head_dim;
  o.n_group = s.n_group;
  o.topk_group = s.topk_group;
  o.first_k_dense = s.first_k_dense;
  return o;
}

template <typename T>
T Element(const model::TensorView& t, int64_t i) {
  T v;
  std::memcpy(&v, t.data.data() + sizeof(T) * i, sizeof(T));
  return v;
}

float FloatElement(const model::TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32:
      return Element<float>(t, i);
    case DType::kBF16:
      return Bf16ToFloat(Element<uint16_t>(t, i));
    case DType::kF16:
      return F16ToFloat(Element<uint16_t>(t, i));
    default:
      ADD_FAILURE() << t.name << " is not a float tensor";
      return 0;
  }
}

std::vector<float> Floats(const model::TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.NumElements()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = FloatElement(t, static_cast<int64_t>(i));
  return v;
}

// Nibble `j` (0..7) of an int32 word: the published packings put element 8k + j at bits 4j.
uint8_t Nibble(int32_t word, int j) {
  return static_cast<uint8_t>((static_cast<uint32_t>(word) >> (4 * j)) & 0xf);
}

struct Made {
  std::string dir;
  model::ModelConfig config;
  std::unique_ptr<model::Checkpoint> checkpoint;
};

Made Make(const MakeModelOptions& options) {
  Made m;
  absl::StatusOr<MakeModelResult> result = MakeModel(options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return m;
  m.dir = options.out_dir;
  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(options.out_dir);
  EXPECT_TRUE(config.ok()) << config.status();
  if (config.ok()) m.config = *config;
  absl::StatusOr<std::unique_ptr<model::Checkpoint>> checkpoint =
      model::Checkpoint::Open(options.out_dir);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  if (checkpoint.ok()) m.checkpoint = *std::move(checkpoint);
  return m;
}

model::TensorView Get(const Made& m, const std::string& name) {
  absl::StatusOr<model::TensorView> t = m.checkpoint->Get(name);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : model::TensorView{};
}

// The twin's weight quantized with QuantizeInt4Groups: values 0..15 ([out, in]) and scales
// ([out, in / group]).
struct Int4Expected {
  std::vector<uint8_t> q;
  std::vector<float> scales;
};

Int4Expected QuantizeTwin(const model::TensorView& twin, int64_t group, DType scale_dtype) {
  const int64_t out = twin.shape[0], in = twin.shape[1];
  Int4Expected e;
  e.q.resize(static_cast<size_t>(out * in));
  e.scales.resize(static_cast<size_t>(out * (in / group)));
  const absl::Status s =
      model::QuantizeInt4Groups(Floats(twin), out, in, group, scale_dtype, e.q, e.scales);
  EXPECT_TRUE(s.ok()) << s;
  return e;
}

// Checks the int4 / fp8 tensors of `linear` in `m` against the twin's weight, unpacking the
// published layout here.
void CheckQuantizedLinear(const Made& m, const Made& twin, const model::LinearSpec& linear,
                          LinearFormat format) {
  SCOPED_TRACE(linear.module);
  const int64_t out = linear.out, in = linear.in;
  const model::TensorView w = Get(twin, linear.module + ".weight");
  ASSERT_EQ(w.shape, (std::vector<int64_t>{out, in}));
  ASSERT_EQ(w.dtype, FloatDType(format));
  // A bias only where the architecture has one (Qwen2-MoE's q/k/v): none of AutoGPTQ's zeros.
  EXPECT_EQ(m.checkpoint->Contains(linear.module + ".bias"), linear.bias);
  const std::vector<float> values = Floats(w);
  if (format == LinearFormat::kFp8Channel) {
    EXPECT_FALSE(m.checkpoint->Contains(linear.module + ".weight_scale_inv"));
    const model::TensorView q = Get(m, linear.module + ".weight");
    const model::TensorView scale = Get(m, linear.module + ".weight_scale");
    ASSERT_EQ(q.dtype, DType::kF8E4M3);
    ASSERT_EQ(q.shape, (std::vector<int64_t>{out, in}));
    ASSERT_EQ(scale.dtype, DType::kBF16);  // the model dtype, as llm-compressor stores it
    ASSERT_EQ(scale.shape, (std::vector<int64_t>{out, 1}));
    for (int64_t r = 0; r < out; ++r) {
      float amax = 0;
      for (int64_t c = 0; c < in; ++c) amax = std::max(amax, std::fabs(values[r * in + c]));
      const float s = FloatElement(scale, r);
      ASSERT_EQ(s, Bf16ToFloat(FloatToBf16(amax / 448.0f))) << "row " << r;
      for (int64_t c = 0; c < in; ++c) {
        const uint8_t stored = Element<uint8_t>(q, r * in + c);
        const float v = values[r * in + c];
        ASSERT_EQ(stored, FloatToF8E4M3(v / s)) << r << ", " << c;
        // e4m3 keeps 3 mantissa bits: half an ulp is 1/16 relative, or 2^-10 below 2^-6.
        const float back = F8E4M3ToFloat(stored) * s;
        ASSERT_LE(std::fabs(back - v), std::max(std::fabs(v) / 16, s * 0x1p-10f) * 1.01f)
            << r << ", " << c;
      }
    }
    return;
  }
  const bool gptq = format == LinearFormat::kInt4Gptq;
  const int64_t group = m.config.int4_quantization->group_size;
  const int64_t groups = in / group;
  const Int4Expected e = QuantizeTwin(w, group, gptq ? DType::kF16 : DType::kBF16);
  std::vector<uint8_t> q(static_cast<size_t>(out * in));         // [out, in] from the checkpoint
  std::vector<float> scales(static_cast<size_t>(out * groups));  // [out, groups]
  if (!gptq) {
    const model::TensorView packed = Get(m, linear.module + ".weight_packed");
    const model::TensorView scale = Get(m, linear.module + ".weight_scale");
    const model::TensorView shape = Get(m, linear.module + ".weight_shape");
    ASSERT_EQ(packed.dtype, DType::kI32);
    ASSERT_EQ(packed.shape, (std::vector<int64_t>{out, in / 8}));
    ASSERT_EQ(scale.dtype, DType::kBF16);
    ASSERT_EQ(scale.shape, (std::vector<int64_t>{out, groups}));
    ASSERT_EQ(shape.dtype, DType::kI64);
    ASSERT_EQ(shape.shape, (std::vector<int64_t>{2}));
    EXPECT_EQ(Element<int64_t>(shape, 0), out);
    EXPECT_EQ(Element<int64_t>(shape, 1), in);
    // Row r, input column 8k + j: bits 4j of word [r][k].
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t c = 0; c < in; ++c) {
        q[r * in + c] = Nibble(Element<int32_t>(packed, r * (in / 8) + c / 8), c % 8);
      }
    }
    for (int64_t i = 0; i < out * groups; ++i) scales[i] = FloatElement(scale, i);
  } else {
    const model::TensorView qweight = Get(m, linear.module + ".qweight");
    const model::TensorView qzeros = Get(m, linear.module + ".qzeros");
    const model::TensorView scale = Get(m, linear.module + ".scales");
    const model::TensorView g_idx = Get(m, linear.module + ".g_idx");
    ASSERT_EQ(qweight.dtype, DType::kI32);
    ASSERT_EQ(qweight.shape, (std::vector<int64_t>{in / 8, out}));
    ASSERT_EQ(qzeros.dtype, DType::kI32);
    ASSERT_EQ(qzeros.shape, (std::vector<int64_t>{groups, out / 8}));
    ASSERT_EQ(scale.dtype, DType::kF16);
    ASSERT_EQ(scale.shape, (std::vector<int64_t>{groups, out}));
    ASSERT_EQ(g_idx.dtype, DType::kI32);
    ASSERT_EQ(g_idx.shape, (std::vector<int64_t>{in}));
    for (int64_t i = 0; i < in; ++i) ASSERT_EQ(Element<int32_t>(g_idx, i), i / group) << i;
    // Symmetric v1: every zero point 8, stored as 7 in each nibble.
    for (int64_t i = 0; i < groups * (out / 8); ++i) {
      ASSERT_EQ(static_cast<uint32_t>(Element<int32_t>(qzeros, i)), 0x77777777u) << i;
    }
    // Input row 8k + j of output column o: bits 4j of qweight[k][o].
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t c = 0; c < in; ++c) {
        q[r * in + c] = Nibble(Element<int32_t>(qweight, (c / 8) * out + r), c % 8);
      }
      for (int64_t g = 0; g < groups; ++g)
        scales[r * groups + g] = FloatElement(scale, g * out + r);
    }
  }
  ASSERT_EQ(q, e.q);
  ASSERT_EQ(scales, e.scales);
  // And the dequantized weight is the twin's within half a step, plus what a group's largest
  // positive value loses when it clamps from 7.5 (a little more: the scale is rounded to
  // bf16 / f16) to 7.
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      const float s = scales[r * groups + c / group];
      const float back = (static_cast<int>(q[r * in + c]) - 8) * s;
      ASSERT_LE(std::fabs(back - values[r * in + c]), 0.54f * s) << r << ", " << c;
    }
  }
}

class QuantizedCheckpointTest
    : public ::testing::TestWithParam<std::tuple<Architecture, LinearFormat>> {};

TEST_P(QuantizedCheckpointTest, PublishedLayoutEqualToTheTwinQuantized) {
  const auto [arch, format] = GetParam();
  const std::string name =
      absl::StrCat(std::string(model::ArchitectureName(arch)), "_", FormatName(format));
  MakeModelOptions options;
  options.arch = arch;
  options.seed = 7;
  options.dtype = FloatDType(format);
  options.quantization = format;
  options.out_dir = ScratchDir(name);
  const Made m = Make(options);
  ASSERT_NE(m.checkpoint, nullptr);

  // The config as published, parsed, and the checkpoint matching it.
  const absl::Status check = model::CheckCheckpointAgainstConfig(*m.checkpoint, m.config);
  EXPECT_TRUE(check.ok()) << check;
  absl::StatusOr<nlohmann::json> json = ReadJsonFile(m.dir + "/config.json");
  ASSERT_TRUE(json.ok());
  const nlohmann::json& qc = (*json)["quantization_config"];
  EXPECT_EQ(m.config.torch_dtype, FloatDType(format));
  if (format == LinearFormat::kInt4Gptq) {
    EXPECT_EQ((*json)["torch_dtype"], "float16");
    EXPECT_EQ(qc, nlohmann::json::parse(R"({"quant_method": "gptq", "bits": 4,
        "group_size": 128, "desc_act": false, "sym": true, "static_groups": false,
        "true_sequential": true, "damp_percent": 0.01, "checkpoint_format": "gptq"})"));
  } else {
    EXPECT_EQ((*json)["torch_dtype"], "bfloat16");
    EXPECT_EQ(qc["quant_method"], "compressed-tensors");
    EXPECT_EQ(qc["quantization_status"], "compressed");
    EXPECT_EQ(qc["config_groups"]["group_0"]["targets"], nlohmann::json::array({"Linear"}));
    // What llm-compressor serialises: every Linear left alone by name, lm_head first; routers
    // are Linear layers in all but DeepSeek (a MoEGate), Qwen2-MoE's shared_expert_gate too.
    std::vector<std::string> ignore;
    if (!m.config.tie_word_embeddings) ignore.push_back("lm_head");
    for (const model::LinearSpec& l : model::LinearLayers(m.config)) {
      if (l.always_plain && l.module != "lm_head") ignore.push_back(l.module);
    }
    EXPECT_EQ(qc["ignore"].get<std::vector<std::string>>(), ignore);
    const nlohmann::json& weights = qc["config_groups"]["group_0"]["weights"];
    if (format == LinearFormat::kInt4CompressedTensors) {
      EXPECT_EQ(qc["format"], "pack-quantized");
      EXPECT_EQ(weights, nlohmann::json::parse(R"({"actorder": null, "block_structure": null,
          "dynamic": false, "group_size": 128, "num_bits": 4, "observer": "minmax",
          "observer_kwargs": {}, "strategy": "group", "symmetric": true, "type": "int"})"));
      EXPECT_TRUE(qc["config_groups"]["group_0"]["input_activations"].is_null());
    } else {
      EXPECT_EQ(qc["format"], "float-quantized");
      EXPECT_EQ(weights["strategy"], "channel");
      EXPECT_EQ(weights["type"], "float");
      EXPECT_EQ(qc["config_groups"]["group_0"]["input_activations"]["strategy"], "token");
      EXPECT_EQ(qc["config_groups"]["group_0"]["input_activations"]["dynamic"], true);
    }
  }

  // The twin: the same model unquantized, with the quantized one's (group-rounded) widths.
  ModelShape shape = *PresetShape("tiny");
  if (format != LinearFormat::kFp8Channel) shape = Int4CompatibleShape(shape, {}, 128, false);
  MakeModelOptions twin_options = options;
  twin_options.quantization = LinearFormat::kPlain;
  twin_options.overrides = Exactly(shape);
  twin_options.out_dir = ScratchDir(name + "_twin");
  const Made twin = Make(twin_options);
  ASSERT_NE(twin.checkpoint, nullptr);

  int quantized = 0;
  std::set<std::string> quantized_names;
  for (const model::LinearSpec& linear : model::LinearLayers(m.config)) {
    if (linear.always_plain) {
      EXPECT_EQ(linear.format, LinearFormat::kPlain) << linear.module;
      continue;
    }
    ASSERT_EQ(linear.format, format) << linear.module;
    CheckQuantizedLinear(m, twin, linear, format);
    if (HasFatalFailure()) return;
    quantized_names.insert(linear.module + ".weight");
    ++quantized;
  }
  EXPECT_GT(quantized, 8);
  // Everything else is the twin's tensor, byte for byte.
  for (const std::string& t : twin.checkpoint->TensorNames()) {
    if (quantized_names.contains(t)) continue;
    const model::TensorView a = Get(m, t);
    const model::TensorView b = Get(twin, t);
    ASSERT_EQ(a.dtype, b.dtype) << t;
    ASSERT_EQ(a.shape, b.shape) << t;
    EXPECT_EQ(std::memcmp(a.data.data(), b.data.data(), a.data.size()), 0) << t;
  }
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, QuantizedCheckpointTest,
                         ::testing::Combine(::testing::ValuesIn(model::AllArchitectures()),
                                            ::testing::Values(LinearFormat::kInt4CompressedTensors,
                                                              LinearFormat::kInt4Gptq,
                                                              LinearFormat::kFp8Channel)),
                         [](const auto& info) {
                           return absl::StrCat(
                               std::string(model::ArchitectureName(std::get<0>(info.param))), "_",
                               FormatName(std::get<1>(info.param)));
                         });

TEST(QuantizedCheckpointTest, ExpertsOnlyQuantizesTheRoutedExpertsAlone) {
  for (const LinearFormat format :
       {LinearFormat::kInt4CompressedTensors, LinearFormat::kInt4Gptq, LinearFormat::kFp8Channel}) {
    for (const Architecture arch : {Architecture::kQwen3Moe, Architecture::kDeepseekV3}) {
      SCOPED_TRACE(
          absl::StrCat(FormatName(format), " ", std::string(model::ArchitectureName(arch))));
      MakeModelOptions options;
      options.arch = arch;
      options.dtype = FloatDType(format);
      options.quantization = format;
      options.experts_only = true;
      options.group_size = 64;
      options.out_dir = ScratchDir(absl::StrCat("experts_only_", FormatName(format), "_",
                                                std::string(model::ArchitectureName(arch))));
      const Made m = Make(options);
      ASSERT_NE(m.checkpoint, nullptr);
      const absl::Status check = model::CheckCheckpointAgainstConfig(*m.checkpoint, m.config);
      EXPECT_TRUE(check.ok()) << check;
      int experts = 0;
      for (const model::LinearSpec& l : model::LinearLayers(m.config)) {
        const bool expert = l.module.find(".experts.") != std::string::npos;
        EXPECT_EQ(l.format, expert ? format : LinearFormat::kPlain) << l.module;
        experts += expert;
      }
      EXPECT_EQ(experts, 2 * 8 * 3 - (arch == Architecture::kDeepseekV3 ? 8 * 3 : 0));
      if (format != LinearFormat::kFp8Channel) {
        EXPECT_EQ(m.config.int4_quantization->group_size, 64);
        // Only expert widths were rounded: tiny's hidden 64 and experts 32 wide -> 64.
        EXPECT_EQ(m.config.hidden_size, 64);
        EXPECT_EQ(m.config.moe_intermediate_size, 64);
      }
      if (format == LinearFormat::kInt4Gptq) {
        absl::StatusOr<nlohmann::json> json = ReadJsonFile(m.dir + "/config.json");
        ASSERT_TRUE(json.ok());
        const nlohmann::json& modules =
            (*json)["quantization_config"]["modules_in_block_to_quantize"];
        ASSERT_EQ(modules.size(), 1u);
        EXPECT_EQ(modules[0].size(), 8u * 3);  // experts.0.gate_proj ... experts.7.down_proj
        EXPECT_EQ(modules[0][0], "mlp.experts.0.gate_proj");
      }
    }
  }
}

// --quantize-lm-head: lm_head in the layers' int4 layout, equal to the twin's lm_head quantized;
// compressed-tensors leaves it out of `ignore`, GPTQ says `"lm_head": true` with GPTQModel's
// `dynamic` override keeping it at 4 bits in the same groups.
TEST(QuantizedCheckpointTest, QuantizedLmHead) {
  for (const LinearFormat format :
       {LinearFormat::kInt4CompressedTensors, LinearFormat::kInt4Gptq}) {
    for (const bool experts_only : {false, true}) {
      const std::string name =
          absl::StrCat("lm_head_", FormatName(format), experts_only ? "_experts_only" : "");
      SCOPED_TRACE(name);
      MakeModelOptions options;
      options.arch = Architecture::kQwen3Moe;
      options.seed = 9;
      options.dtype = FloatDType(format);
      options.quantization = format;
      options.quantize_lm_head = true;
      options.experts_only = experts_only;
      options.group_size = experts_only ? 64 : 128;
      options.out_dir = ScratchDir(name);
      const Made m = Make(options);
      ASSERT_NE(m.checkpoint, nullptr);
      const absl::Status check = model::CheckCheckpointAgainstConfig(*m.checkpoint, m.config);
      EXPECT_TRUE(check.ok()) << check;
      EXPECT_FALSE(m.checkpoint->Contains("lm_head.weight"));

      absl::StatusOr<nlohmann::json> json = ReadJsonFile(m.dir + "/config.json");
      ASSERT_TRUE(json.ok());
      const nlohmann::json& qc = (*json)["quantization_config"];
      if (format == LinearFormat::kInt4Gptq) {
        EXPECT_EQ(qc["lm_head"], true);
        EXPECT_EQ(qc["dynamic"], nlohmann::json::parse(absl::StrCat(
                                     R"({"lm_head": {"bits": 4, "group_size": )",
                                     options.group_size, R"(, "sym": true, "desc_act": false}})")));
        EXPECT_TRUE(m.config.int4_quantization->gptq_lm_head);
      } else {
        const std::vector<std::string> ignore = qc["ignore"].get<std::vector<std::string>>();
        EXPECT_EQ(std::count(ignore.begin(), ignore.end(), "lm_head"), 0);
        EXPECT_FALSE(ignore.empty());  // the routers at least
      }

      // The twin: the same model unquantized, with the quantized one's (group-rounded) widths.
      const ModelShape shape =
          Int4CompatibleShape(*PresetShape("tiny"), {}, options.group_size, experts_only);
      MakeModelOptions twin_options = options;
      twin_options.quantization = LinearFormat::kPlain;
      twin_options.quantize_lm_head = false;
      twin_options.experts_only = false;
      twin_options.overrides = Exactly(shape);
      twin_options.out_dir = ScratchDir(name + "_twin");
      const Made twin = Make(twin_options);
      ASSERT_NE(twin.checkpoint, nullptr);
      bool saw_lm_head = false;
      for (const model::LinearSpec& l : model::LinearLayers(m.config)) {
        const bool quantized =
            l.module == "lm_head" ||
            (!l.always_plain && (!experts_only || l.module.find(".experts.") != std::string::npos));
        ASSERT_EQ(l.format, quantized ? format : LinearFormat::kPlain) << l.module;
        if (l.module != "lm_head") continue;
        saw_lm_head = true;
        EXPECT_FALSE(l.always_plain);
        EXPECT_EQ(l.out, m.config.vocab_size);
        EXPECT_EQ(l.in, m.config.hidden_size);
        CheckQuantizedLinear(m, twin, l, format);
        if (HasFatalFailure()) return;
      }
      EXPECT_TRUE(saw_lm_head);
    }
  }
}

TEST(QuantizedCheckpointTest, ShardedInt4CheckpointHasTheSameTensors) {
  MakeModelOptions options;
  options.arch = Architecture::kQwen3Moe;
  options.quantization = LinearFormat::kInt4CompressedTensors;
  options.group_size = 32;
  options.seed = 4;
  options.out_dir = ScratchDir("ct_whole");
  const Made whole = Make(options);
  options.out_dir = ScratchDir("ct_sharded");
  options.shard_size = 20'000;  // splits a layer's weight_packed, weight_scale and weight_shape
  const Made sharded = Make(options);
  ASSERT_NE(whole.checkpoint, nullptr);
  ASSERT_NE(sharded.checkpoint, nullptr);
  EXPECT_TRUE(sharded.checkpoint->sharded());
  EXPECT_TRUE(model::CheckCheckpointAgainstConfig(*sharded.checkpoint, sharded.config).ok());
  EXPECT_EQ(whole.config.int4_quantization->group_size, 32);
  EXPECT_EQ(whole.config.hidden_size, 64);  // tiny's widths are multiples of 32 already
  const model::TensorView scale = Get(whole, "model.layers.0.mlp.experts.0.down_proj.weight_scale");
  EXPECT_EQ(scale.shape, (std::vector<int64_t>{64, 1}));
  for (const std::string& t : whole.checkpoint->TensorNames()) {
    const model::TensorView a = Get(whole, t);
    const model::TensorView b = Get(sharded, t);
    ASSERT_EQ(a.data.size(), b.data.size()) << t;
    EXPECT_EQ(std::memcmp(a.data.data(), b.data.data(), a.data.size()), 0) << t;
  }
}

TEST(QuantizedCheckpointTest, PresetWidthsRoundUpToTheGroupAndOverridesStay) {
  const ModelShape tiny = *PresetShape("tiny");
  const ModelShape s = Int4CompatibleShape(tiny, {}, 128, false);
  EXPECT_EQ(s.hidden_size, 128);
  EXPECT_EQ(s.intermediate_size, 128);
  EXPECT_EQ(s.moe_intermediate_size, 128);
  EXPECT_EQ(s.kv_lora_rank, 128);
  EXPECT_EQ(s.q_lora_rank, 128);
  EXPECT_EQ(s.head_dim * s.num_heads % 128, 0);
  EXPECT_EQ(s.v_head_dim * s.num_heads % 128, 0);
  EXPECT_EQ(s.head_dim, 32);
  EXPECT_EQ(s.qk_rope_head_dim, tiny.qk_rope_head_dim);
  ShapeOverrides o;
  o.hidden_size = 96;
  EXPECT_EQ(Int4CompatibleShape(tiny, o, 128, false).hidden_size, tiny.hidden_size);
  const ModelShape large = *PresetShape("large");
  const ModelShape l = Int4CompatibleShape(large, {}, 128, false);
  EXPECT_EQ(l.hidden_size, large.hidden_size);
  EXPECT_EQ(l.moe_intermediate_size, large.moe_intermediate_size);
  EXPECT_EQ(l.intermediate_size, large.intermediate_size);
}

TEST(QuantizedCheckpointTest, UnsupportedCombinationsAreClearErrors) {
  MakeModelOptions options;
  options.arch = Architecture::kQwen3Moe;
  options.out_dir = ScratchDir("bad");
  const auto error = [&](const MakeModelOptions& o) {
    absl::StatusOr<MakeModelResult> r = MakeModel(o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(r.status().message());
  };
  // GPTQ as published is float16.
  options.quantization = LinearFormat::kInt4Gptq;
  EXPECT_NE(error(options).find("float16"), std::string::npos);
  // Group sizes.
  options.quantization = LinearFormat::kInt4CompressedTensors;
  options.group_size = 48;
  EXPECT_NE(error(options).find("group size 48"), std::string::npos);
  // A width the group does not divide, given explicitly: named with its module.
  options.group_size = 128;
  options.overrides.hidden_size = 96;
  const std::string width = error(options);
  EXPECT_NE(width.find("128 does not divide the 96 input features"), std::string::npos) << width;
  EXPECT_NE(width.find("model.layers.0.self_attn.q_proj"), std::string::npos) << width;
  options.overrides = {};
  // fp8 blocks do not combine with another quantization.
  options.dtype = DType::kF8E4M3;
  EXPECT_NE(error(options).find("fp8"), std::string::npos);
  options.dtype = DType::kBF16;
  // Experts only: for the quantized formats, and for models with experts.
  options.quantization = LinearFormat::kPlain;
  options.experts_only = true;
  EXPECT_NE(error(options).find("experts-only"), std::string::npos);
  options.quantization = LinearFormat::kFp8Channel;
  options.arch = Architecture::kLlama;
  EXPECT_NE(error(options).find("no routed experts"), std::string::npos);
  // A quantized lm_head: int4 only, and not where lm_head is the embedding table.
  options.experts_only = false;
  options.arch = Architecture::kQwen3Moe;
  options.quantize_lm_head = true;
  EXPECT_NE(error(options).find("quantize-lm-head applies to int4"), std::string::npos);
  options.quantization = LinearFormat::kInt4CompressedTensors;
  options.arch = Architecture::kLlama;
  const std::string tied = error(options);
  EXPECT_NE(tied.find("tie_word_embeddings"), std::string::npos) << tied;
  options.quantize_lm_head = false;
  // A config edit that removes the quantization the checkpoint is written for.
  options.arch = Architecture::kQwen3Moe;
  options.experts_only = false;
  options.config_edits = {{"quantization_config", "null"}};
  EXPECT_NE(error(options).find("quantization_config"), std::string::npos);
}

}  // namespace
}  // namespace expertmesh::make_model
