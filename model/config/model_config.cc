// Architecture names, layer predicates and validation of ModelConfig. Parsing lives in
// config_parse.cc.
#include "model/config/model_config.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "model/config/json_fields.h"
#include "model/config/module_filter.h"
#include "model/config/weight_layout.h"

namespace expertmesh::model {
namespace {

constexpr std::array<std::pair<Architecture, std::string_view>, 6> kArchitectureNames = {{
    {Architecture::kLlama, "LlamaForCausalLM"},
    {Architecture::kMixtral, "MixtralForCausalLM"},
    {Architecture::kQwen2Moe, "Qwen2MoeForCausalLM"},
    {Architecture::kQwen3Moe, "Qwen3MoeForCausalLM"},
    {Architecture::kDeepseekV2, "DeepseekV2ForCausalLM"},
    {Architecture::kDeepseekV3, "DeepseekV3ForCausalLM"},
}};

// Accumulates the first failed check of Validate() as "<source>: field '<f>': <why>".
class Checker {
 public:
  explicit Checker(std::string_view source) : source_(source) {}
  void Require(bool ok, std::string_view field, std::string_view why) {
    if (!ok && status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(source_), ": field '", AsAbsl(field), "': ", AsAbsl(why)));
    }
  }
  void Positive(int64_t value, std::string_view field) {
    Require(value > 0, field, absl::StrCat("must be positive, got ", value));
  }
  void AtMost(int64_t value, int64_t limit, std::string_view field) {
    Require(value <= limit, field,
            absl::StrCat(value, " is beyond any supported model (at most ", limit, ")"));
  }
  absl::Status status() const { return status_; }

 private:
  std::string_view source_;
  absl::Status status_;
};

// Checks what a quantization config implies for each Linear layer (so only once the rest of
// the config is valid): the int4 groups divide every quantized layer's input width (and GPTQ's
// packed zero points its output width); compressed-tensors leaves routers unquantized, and
// lm_head too unless it is int4, which is how llm-compressor's recipes write them and what the
// loader reads; GPTQ's `dynamic` overrides reach lm_head alone.
void ValidateQuantizedLinears(const ModelConfig& config, Checker& c) {
  const std::optional<Int4Quantization>& int4 = config.int4_quantization;
  const bool gptq = int4.has_value() && int4->format == Int4Quantization::Format::kGptq;
  const std::string group_field = gptq ? "quantization_config.group_size"
                                       : "quantization_config.config_groups.weights.group_size";
  std::vector<std::pair<std::string, CompressedTensorsMatcher>> dynamic;
  if (gptq) {
    for (const std::string& key : int4->gptq_dynamic) {
      // ParseModelConfig compiled these already.
      dynamic.emplace_back(key, CompressedTensorsMatcher::Create({GptqDynamicPattern(key)})
                                    .value_or(CompressedTensorsMatcher()));
    }
  }
  for (const LinearSpec& l : LinearLayers(config)) {
    for (const auto& [key, matcher] : dynamic) {
      c.Require(l.module == "lm_head" || !matcher.Matches(l.module, /*is_linear=*/true),
                "quantization_config.dynamic",
                absl::StrCat("'", key, "' also overrides ", l.module,
                             "; per-module overrides are supported for lm_head only"));
    }
    if (l.always_plain) {
      c.Require(!CompressedTensorsQuantizes(config, l.module), "quantization_config.ignore",
                absl::StrCat(l.module, " (", l.module == "lm_head" ? "lm_head" : "a router",
                             ") is selected by the targets; expertmesh reads it unquantized, so "
                             "the ignore list must name it"));
      continue;
    }
    if (l.format != LinearFormat::kInt4CompressedTensors && l.format != LinearFormat::kInt4Gptq) {
      continue;
    }
    c.Require(l.in % int4->group_size == 0, group_field,
              absl::StrCat(int4->group_size, " does not divide the ", l.in, " input features of ",
                           l.module));
    if (gptq) {
      c.Require(l.out % 8 == 0, "quantization_config.bits",
                absl::StrCat("GPTQ packs 8 zero points per int32, but ", l.module, " has ", l.out,
                             " outputs"));
    }
  }
}

}  // namespace

std::string GptqDynamicPattern(std::string_view key) {
  if (key.starts_with("+:") || key.starts_with("-:")) key.remove_prefix(2);
  return absl::StrCat("re:", AsAbsl(key));
}

std::string_view ArchitectureName(Architecture arch) {
  for (const auto& [value, name] : kArchitectureNames) {
    if (value == arch) return name;
  }
  return "UnknownArchitecture";
}

std::optional<Architecture> ArchitectureFromName(std::string_view name) {
  for (const auto& [value, spelling] : kArchitectureNames) {
    if (spelling == name) return value;
  }
  return std::nullopt;
}

const std::vector<Architecture>& AllArchitectures() {
  static const std::vector<Architecture> kAll = [] {
    std::vector<Architecture> all;
    for (const auto& entry : kArchitectureNames) all.push_back(entry.first);
    return all;
  }();
  return kAll;
}

std::string_view RopeScalingTypeName(RopeScalingType type) {
  switch (type) {
    case RopeScalingType::kNone:
      return "none";
    case RopeScalingType::kLinear:
      return "linear";
    case RopeScalingType::kDynamic:
      return "dynamic";
    case RopeScalingType::kYarn:
      return "yarn";
    case RopeScalingType::kLlama3:
      return "llama3";
  }
  return "unknown";
}

std::string_view MoeScoringName(MoeScoring scoring) {
  return scoring == MoeScoring::kSigmoid ? "sigmoid" : "softmax";
}

std::string_view TopkMethodName(TopkMethod method) {
  switch (method) {
    case TopkMethod::kGreedy:
      return "greedy";
    case TopkMethod::kGroupLimitedGreedy:
      return "group_limited_greedy";
    case TopkMethod::kNoauxTc:
      return "noaux_tc";
  }
  return "unknown";
}

bool ModelConfig::IsMoeLayer(int layer) const {
  if (num_experts <= 0 || layer < 0 || layer >= num_hidden_layers) return false;
  switch (architecture) {
    case Architecture::kLlama:
      return false;
    case Architecture::kMixtral:
      return true;
    case Architecture::kQwen2Moe:
    case Architecture::kQwen3Moe:
      // transformers: not in mlp_only_layers and (layer_idx + 1) % decoder_sparse_step == 0.
      if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) !=
          mlp_only_layers.end()) {
        return false;
      }
      return decoder_sparse_step > 0 && (layer + 1) % decoder_sparse_step == 0;
    case Architecture::kDeepseekV2:
    case Architecture::kDeepseekV3:
      return moe_layer_freq > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  return false;
}

int64_t ModelConfig::NumMoeLayers() const {
  int64_t n = 0;
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer) {
    if (IsMoeLayer(static_cast<int>(layer))) ++n;
  }
  return n;
}

absl::Status ModelConfig::Validate(std::string_view source_name) const {
  Checker c(source_name);
  c.Positive(vocab_size, "vocab_size");
  c.Positive(hidden_size, "hidden_size");
  c.Positive(num_hidden_layers, "num_hidden_layers");
  c.Positive(num_attention_heads, "num_attention_heads");
  c.Positive(num_key_value_heads, "num_key_value_heads");
  c.Positive(head_dim, "head_dim");
  c.Positive(max_position_embeddings, "max_position_embeddings");
  // Sizes far beyond every published model (DeepSeek-V3: 61 layers, 256 experts, hidden 7168)
  // are refused here: `inspect`, the planner and the loaders build per-layer and per-expert
  // tables from them, and a config.json saying 1e9 layers must be an error, not gigabytes.
  c.AtMost(vocab_size, kMaxConfigVocab, "vocab_size");
  c.AtMost(hidden_size, kMaxConfigWidth, "hidden_size");
  c.AtMost(intermediate_size, kMaxConfigWidth, "intermediate_size");
  c.AtMost(moe_intermediate_size, kMaxConfigWidth, "moe_intermediate_size");
  c.AtMost(shared_expert_intermediate_size, kMaxConfigWidth, "shared_expert_intermediate_size");
  c.AtMost(num_hidden_layers, kMaxConfigLayers, "num_hidden_layers");
  c.AtMost(num_attention_heads, kMaxConfigHeads, "num_attention_heads");
  c.AtMost(num_key_value_heads, kMaxConfigHeads, "num_key_value_heads");
  c.AtMost(head_dim, kMaxConfigWidth, "head_dim");
  c.AtMost(num_experts, kMaxConfigExperts, "num_experts");
  c.AtMost(max_position_embeddings, kMaxConfigContext, "max_position_embeddings");
  c.Require(num_key_value_heads <= 0 || num_attention_heads % num_key_value_heads == 0,
            "num_key_value_heads",
            absl::StrCat(num_key_value_heads, " does not divide num_attention_heads ",
                         num_attention_heads));
  c.Require(rms_norm_eps > 0, "rms_norm_eps", "must be positive");
  c.Require(rope_theta > 0, "rope_theta", "must be positive");
  c.Require(hidden_act == "silu", "hidden_act",
            absl::StrCat("'", hidden_act, "' is not supported (only 'silu')"));
  if (rope_scaling.type != RopeScalingType::kNone) {
    c.Require(rope_scaling.factor > 0, "rope_scaling.factor", "must be positive");
  }
  if (sliding_window.has_value()) c.Positive(*sliding_window, "sliding_window");
  if (fp8_quantization.has_value() && !fp8_quantization->per_channel) {
    c.Positive(fp8_quantization->block_rows, "quantization_config.weight_block_size[0]");
    c.Positive(fp8_quantization->block_cols, "quantization_config.weight_block_size[1]");
    if (absl::StatusOr<ModuleFilter> filter =
            ModuleFilter::Create(fp8_quantization->modules_to_not_convert);
        !filter.ok()) {
      c.Require(false, "quantization_config.modules_to_not_convert",
                std::string(filter.status().message()));
    }
  }
  // compressed-tensors patterns (int4 pack-quantized or per-channel fp8).
  const bool compressed_tensors =
      (fp8_quantization.has_value() && fp8_quantization->per_channel) ||
      (int4_quantization.has_value() &&
       int4_quantization->format == Int4Quantization::Format::kCompressedTensors);
  if (compressed_tensors) {
    const bool fp8 = fp8_quantization.has_value();
    for (const auto& [list, field] :
         {std::pair{fp8 ? &fp8_quantization->targets : &int4_quantization->targets,
                    "quantization_config.config_groups.targets"},
          std::pair{fp8 ? &fp8_quantization->ignore : &int4_quantization->ignore,
                    "quantization_config.ignore"}}) {
      if (absl::StatusOr<CompressedTensorsMatcher> m = CompressedTensorsMatcher::Create(*list);
          !m.ok()) {
        c.Require(false, field, std::string(m.status().message()));
      }
    }
  }
  if (int4_quantization.has_value()) {
    c.Require(!fp8_quantization.has_value(), "quantization_config",
              "int4 and fp8 quantization together");
    // A tied lm_head is the embedding table, and no quantizer writes one quantized: GPTQModel
    // refuses to quantize lm_head when the weights are tied, and llm-compressor unties them
    // (writing tie_word_embeddings false) before quantizing lm_head. (A compressed-tensors
    // `targets` that would select lm_head means nothing with tied weights: there is no lm_head
    // module, and the embedding serves unquantized, as vLLM serves it.)
    c.Require(!tie_word_embeddings ||
                  int4_quantization->format != Int4Quantization::Format::kGptq ||
                  !int4_quantization->gptq_lm_head,
              "tie_word_embeddings",
              "true, but quantization_config.lm_head quantizes lm_head, which tied weights make "
              "the embedding table (kept unquantized); untie them or set lm_head false");
    c.Require(int4_quantization->group_size > 0 && int4_quantization->group_size % 32 == 0,
              "quantization_config.group_size",
              absl::StrCat(int4_quantization->group_size, " is not a positive multiple of 32"));
  }
  if (bos_token_id.has_value()) {
    c.Require(*bos_token_id >= 0 && *bos_token_id < vocab_size, "bos_token_id",
              absl::StrCat(*bos_token_id, " is outside the vocabulary of ", vocab_size));
  }
  for (int64_t eos : eos_token_ids) {
    c.Require(eos >= 0 && eos < vocab_size, "eos_token_id",
              absl::StrCat(eos, " is outside the vocabulary of ", vocab_size));
  }

  if (UsesMla()) {
    if (q_lora_rank.has_value()) c.Positive(*q_lora_rank, "q_lora_rank");
    c.Require(qk_nope_head_dim >= 0, "qk_nope_head_dim", "must not be negative");
    c.Positive(qk_rope_head_dim, "qk_rope_head_dim");
    c.Require(qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "RoPE needs an even width");
    c.Positive(v_head_dim, "v_head_dim");
  } else {
    c.Require(head_dim % 2 == 0, "head_dim", "RoPE needs an even head_dim");
  }

  if (NumMoeLayers() < num_hidden_layers) {
    c.Positive(intermediate_size, "intermediate_size");  // some layer has a dense MLP
  }
  if (IsMoe()) {
    c.Positive(num_experts_per_tok, "num_experts_per_tok");
    c.Require(num_experts_per_tok <= num_experts, "num_experts_per_tok",
              absl::StrCat(num_experts_per_tok, " exceeds the ", num_experts, " experts"));
    c.Positive(moe_intermediate_size, "moe_intermediate_size");
    c.Require(shared_expert_intermediate_size >= 0, "shared_expert_intermediate_size",
              "must not be negative");
    c.Positive(n_group, "n_group");
    c.Require(n_group <= 0 || num_experts % n_group == 0, "n_group",
              absl::StrCat(n_group, " does not divide the ", num_experts, " experts"));
    c.Require(topk_group >= 1 && topk_group <= n_group, "topk_group",
              absl::StrCat(topk_group, " must be in [1, n_group=", n_group, "]"));
    if (topk_method != TopkMethod::kGreedy && n_group > 0) {
      c.Require(num_experts_per_tok <= topk_group * (num_experts / n_group), "num_experts_per_tok",
                absl::StrCat(num_experts_per_tok, " exceeds the experts of the ", topk_group,
                             " selected groups"));
    }
    c.Require(routed_scaling_factor > 0, "routed_scaling_factor", "must be positive");
    c.Positive(decoder_sparse_step, "decoder_sparse_step");
    c.Positive(moe_layer_freq, "moe_layer_freq");
    c.Require(first_k_dense_replace >= 0 && first_k_dense_replace <= num_hidden_layers,
              "first_k_dense_replace",
              absl::StrCat(first_k_dense_replace, " is not in [0, num_hidden_layers]"));
    for (int64_t layer : mlp_only_layers) {
      c.Require(layer >= 0 && layer < num_hidden_layers, "mlp_only_layers",
                absl::StrCat("layer ", layer, " does not exist"));
    }
  }
  if (c.status().ok() && (compressed_tensors || int4_quantization.has_value())) {
    ValidateQuantizedLinears(*this, c);
  }
  return c.status();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  auto json = ReadJsonFile(path);
  if (!json.ok()) return json.status();
  return ParseModelConfig(*json, path);
}

}  // namespace expertmesh::model
