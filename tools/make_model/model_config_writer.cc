#include "tools/make_model/model_config_writer.h"

#include <string>

namespace expertmesh::make_model {
namespace {

using Json = nlohmann::ordered_json;
using model::Architecture;

const char* ModelType(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama:
      return "llama";
    case Architecture::kMixtral:
      return "mixtral";
    case Architecture::kQwen2Moe:
      return "qwen2_moe";
    case Architecture::kQwen3Moe:
      return "qwen3_moe";
    case Architecture::kDeepseekV2:
      return "deepseek_v2";
    case Architecture::kDeepseekV3:
      return "deepseek_v3";
  }
  return "llama";
}

Json EosJson(const SpecialTokenIds& ids) {
  if (ids.stop_ids.size() == 1) return ids.stop_ids[0];
  return ids.stop_ids;
}

// Keys every architecture shares, in the order published configs list them.
Json CommonKeys(Architecture arch, const ModelShape& s, int64_t vocab_size,
                const SpecialTokenIds& ids) {
  Json c;
  c["architectures"] = Json::array({std::string(model::ArchitectureName(arch))});
  c["model_type"] = ModelType(arch);
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = ids.bos.has_value() ? Json(*ids.bos) : Json(nullptr);
  c["eos_token_id"] = EosJson(ids);
  c["hidden_act"] = "silu";
  c["hidden_size"] = s.hidden_size;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = s.intermediate_size;
  c["max_position_embeddings"] = s.max_position_embeddings;
  c["num_attention_heads"] = s.num_heads;
  c["num_hidden_layers"] = s.num_layers;
  c["num_key_value_heads"] = s.num_kv_heads;
  c["rms_norm_eps"] = 1e-6;
  c["use_cache"] = true;
  c["vocab_size"] = vocab_size;
  return c;
}

// DeepSeek's YaRN: the published checkpoints extend a 4k pre-training context 40x; the scaled
// models keep the ratio structure with their own original length.
Json YarnScaling(const ModelShape& s, double mscale) {
  const int64_t factor = 4;
  return Json{{"beta_fast", 32},
              {"beta_slow", 1},
              {"factor", factor},
              {"mscale", mscale},
              {"mscale_all_dim", mscale},
              {"original_max_position_embeddings", s.max_position_embeddings / factor},
              {"type", "yarn"}};
}

void AddLlama(const ModelShape& s, Json& c) {
  c["attention_bias"] = false;
  c["head_dim"] = s.hidden_size / s.num_heads;
  c["mlp_bias"] = false;
  c["pretraining_tp"] = 1;
  c["rms_norm_eps"] = 1e-5;
  c["rope_theta"] = 500000.0;
  // Llama 3.1's frequency-dependent interpolation over an 8x shorter original context.
  c["rope_scaling"] = Json{{"factor", 8.0},
                           {"high_freq_factor", 4.0},
                           {"low_freq_factor", 1.0},
                           {"original_max_position_embeddings", s.max_position_embeddings / 8},
                           {"rope_type", "llama3"}};
  c["tie_word_embeddings"] = true;  // as Llama 3.2 1B/3B
}

void AddMixtral(const ModelShape& s, Json& c) {
  c["head_dim"] = s.hidden_size / s.num_heads;
  c["intermediate_size"] = s.moe_intermediate_size;  // Mixtral: each expert's width
  c["num_experts_per_tok"] = s.num_experts_per_tok;
  c["num_local_experts"] = s.num_experts;
  c["output_router_logits"] = false;
  c["rms_norm_eps"] = 1e-5;
  c["rope_theta"] = 1000000.0;
  c["rope_scaling"] = nullptr;
  c["router_aux_loss_coef"] = 0.02;
  c["router_jitter_noise"] = 0.0;
  c["sliding_window"] = nullptr;
  c["tie_word_embeddings"] = false;
}

void AddQwenMoe(Architecture arch, const ModelShape& s, Json& c) {
  if (arch == Architecture::kQwen3Moe) {
    c["attention_bias"] = false;
    c["head_dim"] = s.head_dim;
  }
  c["decoder_sparse_step"] = 1;
  c["max_window_layers"] = s.num_layers;
  c["mlp_only_layers"] = Json::array();
  c["moe_intermediate_size"] = s.moe_intermediate_size;
  c["norm_topk_prob"] = arch == Architecture::kQwen3Moe;
  c["num_experts"] = s.num_experts;
  c["num_experts_per_tok"] = s.num_experts_per_tok;
  c["output_router_logits"] = false;
  c["rope_scaling"] = nullptr;
  c["rope_theta"] = 1000000.0;
  c["router_aux_loss_coef"] = 0.001;
  if (arch == Architecture::kQwen2Moe) {
    // Qwen1.5-MoE: one shared expert four routed experts wide, behind a sigmoid gate.
    c["shared_expert_intermediate_size"] = s.moe_intermediate_size * 4 * s.num_shared_experts;
  }
  c["sliding_window"] = nullptr;
  c["tie_word_embeddings"] = false;
  c["use_sliding_window"] = false;
}

void AddDeepseek(Architecture arch, const ModelShape& s, Json& c) {
  const bool v3 = arch == Architecture::kDeepseekV3;
  c["attention_bias"] = false;
  c["aux_loss_alpha"] = 0.001;
  c["ep_size"] = 1;
  c["first_k_dense_replace"] = s.first_k_dense;
  c["kv_lora_rank"] = s.kv_lora_rank;
  c["moe_intermediate_size"] = s.moe_intermediate_size;
  c["moe_layer_freq"] = 1;
  c["n_group"] = s.n_group;
  c["n_routed_experts"] = s.num_experts;
  c["n_shared_experts"] = s.num_shared_experts;
  c["norm_topk_prob"] = v3;
  c["num_experts_per_tok"] = s.num_experts_per_tok;
  c["num_key_value_heads"] = s.num_heads;  // MLA: every head has its own decompressed k/v
  if (v3) c["num_nextn_predict_layers"] = 0;
  // V3 has a query compression; V2 is written as V2-Lite, whose q_proj is a plain Linear.
  c["q_lora_rank"] = v3 ? Json(s.q_lora_rank) : Json(nullptr);
  c["qk_nope_head_dim"] = s.qk_nope_head_dim;
  c["qk_rope_head_dim"] = s.qk_rope_head_dim;
  c["rope_scaling"] = YarnScaling(s, v3 ? 1.0 : 0.707);
  c["rope_theta"] = 10000.0;
  c["routed_scaling_factor"] = v3 ? 2.5 : 1.0;
  c["scoring_func"] = v3 ? "sigmoid" : "softmax";
  c["seq_aux"] = true;
  c["tie_word_embeddings"] = false;
  c["topk_group"] = s.topk_group;
  c["topk_method"] = v3 ? "noaux_tc" : "group_limited_greedy";
  c["v_head_dim"] = s.v_head_dim;
}

}  // namespace

int64_t PaddedVocabSize(int64_t num_tokens) { return (num_tokens + 63) / 64 * 64; }

nlohmann::ordered_json BuildConfigJson(Architecture arch, const ModelShape& shape,
                                       int64_t vocab_size, const SpecialTokenIds& ids, DType dtype,
                                       const nlohmann::ordered_json& quantization_config) {
  Json c = CommonKeys(arch, shape, vocab_size, ids);
  switch (arch) {
    case Architecture::kLlama:
      AddLlama(shape, c);
      break;
    case Architecture::kMixtral:
      AddMixtral(shape, c);
      break;
    case Architecture::kQwen2Moe:
    case Architecture::kQwen3Moe:
      AddQwenMoe(arch, shape, c);
      break;
    case Architecture::kDeepseekV2:
    case Architecture::kDeepseekV3:
      AddDeepseek(arch, shape, c);
      break;
  }
  c["torch_dtype"] = dtype == DType::kF32   ? "float32"
                     : dtype == DType::kF16 ? "float16"
                                            : "bfloat16";
  if (dtype == DType::kF8E4M3) {
    // As DeepSeek-V3 and Qwen3-FP8 publish it: linear weights in e4m3 with a 128 x 128 block
    // scale each, everything else in torch_dtype.
    c["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {128, 128}}};
  }
  if (!quantization_config.is_null()) c["quantization_config"] = quantization_config;
  // Published checkpoints carry the transformers version that wrote them; a 4.x value matches
  // the key style used here (rope_theta / rope_scaling / torch_dtype, not rope_parameters).
  c["transformers_version"] = "4.51.0";
  return c;
}

nlohmann::ordered_json QuantizationConfigJson(model::LinearFormat format, int64_t group_size,
                                              const std::vector<std::string>& ignore,
                                              const std::vector<std::string>& gptq_modules,
                                              bool gptq_lm_head) {
  if (format == model::LinearFormat::kInt4Gptq) {
    // AutoGPTQ's BaseQuantizeConfig as Qwen's GPTQ-Int4 configs carry it; checkpoint_format
    // "gptq" (v1) stores each zero point minus one.
    Json q{{"quant_method", "gptq"},
           {"bits", 4},
           {"group_size", group_size},
           {"desc_act", false},
           {"sym", true},
           {"static_groups", false},
           {"true_sequential", true},
           {"damp_percent", 0.01},
           {"checkpoint_format", "gptq"}};
    if (!gptq_modules.empty()) q["modules_in_block_to_quantize"] = Json::array({gptq_modules});
    if (gptq_lm_head) {
      // GPTQModel's QuantizeConfig.lm_head, and the per-module override its looper reads for
      // lm_head (keyed by the module name, matched as a regex), here keeping the layers' format.
      q["lm_head"] = true;
      q["dynamic"] = {
          {"lm_head",
           {{"bits", 4}, {"group_size", group_size}, {"sym", true}, {"desc_act", false}}}};
    }
    return q;
  }
  // compressed-tensors' QuantizationArgs, every field serialised in its order.
  const auto args = [](int64_t bits, const char* type, const char* strategy, Json group_size_arg,
                       bool dynamic, Json observer) {
    return Json{{"actorder", nullptr},
                {"block_structure", nullptr},
                {"dynamic", dynamic},
                {"group_size", std::move(group_size_arg)},
                {"num_bits", bits},
                {"observer", std::move(observer)},
                {"observer_kwargs", Json::object()},
                {"strategy", strategy},
                {"symmetric", true},
                {"type", type}};
  };
  const bool int4 = format == model::LinearFormat::kInt4CompressedTensors;
  Json group;
  if (int4) {
    group["input_activations"] = nullptr;
    group["output_activations"] = nullptr;
    group["targets"] = Json::array({"Linear"});
    group["weights"] = args(4, "int", "group", group_size, false, "minmax");
  } else {
    // FP8_DYNAMIC declares per-token fp8 activations; the engine serves the weights as W8A16.
    group["input_activations"] = args(8, "float", "token", nullptr, true, nullptr);
    group["output_activations"] = nullptr;
    group["targets"] = Json::array({"Linear"});
    group["weights"] = args(8, "float", "channel", nullptr, false, "minmax");
  }
  return Json{{"config_groups", {{"group_0", std::move(group)}}},
              {"format", int4 ? "pack-quantized" : "float-quantized"},
              {"ignore", ignore},
              {"kv_cache_scheme", nullptr},
              {"quant_method", "compressed-tensors"},
              {"quantization_status", "compressed"}};
}

nlohmann::ordered_json BuildGenerationConfigJson(const SpecialTokenIds& ids) {
  Json g;
  if (ids.bos.has_value()) g["bos_token_id"] = *ids.bos;
  g["eos_token_id"] = EosJson(ids);
  g["pad_token_id"] = ids.pad;
  g["transformers_version"] = "4.51.0";
  return g;
}

}  // namespace expertmesh::make_model
