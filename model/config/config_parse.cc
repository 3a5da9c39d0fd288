// ParseModelConfig: config.json (published Hugging Face keys or transformers 5 keys) ->
// ModelConfig. Defaults follow the transformers configuration classes of each architecture.
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/config/json_fields.h"
#include "model/config/model_config.h"
#include "model/config/module_filter.h"

namespace expertmesh::model {
namespace {

template <typename T>
T ValueOr(const std::optional<T>& value, T fallback) {
  return value.has_value() ? *value : fallback;
}

absl::StatusOr<DType> ParseTorchDType(const JsonFields& f) {
  // transformers 5 writes `dtype`; published checkpoints `torch_dtype`.
  const char* key = f.Has("dtype") ? "dtype" : "torch_dtype";
  ASSIGN_OR_RETURN(std::optional<std::string> name, f.OptionalString(key));
  if (!name.has_value()) return DType::kF32;  // transformers' default when unspecified
  if (*name == "bfloat16") return DType::kBF16;
  if (*name == "float16") return DType::kF16;
  if (*name == "float32") return DType::kF32;
  return f.Error(
      key, absl::StrCat("unsupported dtype '", *name, "' (expected bfloat16, float16 or float32)"));
}

// Reads rope_theta and the scaling from either `rope_scaling` + `rope_theta` (published) or
// `rope_parameters` (transformers 5, which folds rope_theta in).
absl::Status ParseRope(const JsonFields& f, double default_theta, ModelConfig& c) {
  ASSIGN_OR_RETURN(const nlohmann::json* params, f.OptionalObject("rope_parameters"));
  ASSIGN_OR_RETURN(const nlohmann::json* scaling, f.OptionalObject("rope_scaling"));
  const nlohmann::json* rope = params != nullptr ? params : scaling;
  const std::string path = params != nullptr ? "rope_parameters." : "rope_scaling.";

  ASSIGN_OR_RETURN(std::optional<double> theta, f.OptionalNumber("rope_theta"));
  c.rope_theta = ValueOr(theta, default_theta);
  if (rope == nullptr) return absl::OkStatus();

  JsonFields r(*rope, f.source(), path);
  ASSIGN_OR_RETURN(std::optional<double> nested_theta, r.OptionalNumber("rope_theta"));
  if (nested_theta.has_value()) c.rope_theta = *nested_theta;
  const char* type_key = r.Has("rope_type") ? "rope_type" : "type";
  ASSIGN_OR_RETURN(std::optional<std::string> type, r.OptionalString(type_key));
  RopeScaling& s = c.rope_scaling;
  const std::string t = ValueOr<std::string>(type, "default");
  if (t == "default") {
    s.type = RopeScalingType::kNone;
    return absl::OkStatus();
  } else if (t == "linear") {
    s.type = RopeScalingType::kLinear;
  } else if (t == "dynamic") {
    s.type = RopeScalingType::kDynamic;
  } else if (t == "yarn") {
    s.type = RopeScalingType::kYarn;
  } else if (t == "llama3") {
    s.type = RopeScalingType::kLlama3;
  } else {
    return r.Error(type_key, absl::StrCat("unsupported RoPE scaling '", t,
                                          "' (expected default, linear, dynamic, yarn, llama3)"));
  }
  ASSIGN_OR_RETURN(s.factor, r.Number("factor"));
  ASSIGN_OR_RETURN(std::optional<int64_t> original,
                   r.OptionalInt("original_max_position_embeddings"));
  if (s.type == RopeScalingType::kLlama3 && !original.has_value()) {
    return r.Error("original_max_position_embeddings", "missing required field");
  }
  s.original_max_position_embeddings = ValueOr(original, c.max_position_embeddings);
  ASSIGN_OR_RETURN(std::optional<double> beta_fast, r.OptionalNumber("beta_fast"));
  ASSIGN_OR_RETURN(std::optional<double> beta_slow, r.OptionalNumber("beta_slow"));
  ASSIGN_OR_RETURN(std::optional<double> mscale, r.OptionalNumber("mscale"));
  ASSIGN_OR_RETURN(std::optional<double> mscale_all_dim, r.OptionalNumber("mscale_all_dim"));
  ASSIGN_OR_RETURN(s.attention_factor, r.OptionalNumber("attention_factor"));
  ASSIGN_OR_RETURN(std::optional<double> low, r.OptionalNumber("low_freq_factor"));
  ASSIGN_OR_RETURN(std::optional<double> high, r.OptionalNumber("high_freq_factor"));
  s.beta_fast = ValueOr(beta_fast, 32.0);
  s.beta_slow = ValueOr(beta_slow, 1.0);
  s.mscale = ValueOr(mscale, 1.0);
  s.mscale_all_dim = ValueOr(mscale_all_dim, 0.0);
  s.low_freq_factor = ValueOr(low, 1.0);
  s.high_freq_factor = ValueOr(high, 4.0);
  return absl::OkStatus();
}

// DeepSeek-V3 / Qwen3-FP8 block-wise fp8 (quant_method "fp8").
absl::Status ParseFp8Blocks(const JsonFields& qf, ModelConfig& c) {
  ASSIGN_OR_RETURN(std::optional<std::string> fmt, qf.OptionalString("fmt"));
  if (fmt.has_value() && *fmt != "e4m3") {
    return qf.Error("fmt", absl::StrCat("unsupported fp8 format '", *fmt, "' (only e4m3)"));
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> block, qf.IntOrIntList("weight_block_size"));
  if (block.size() != 2) {
    return qf.Error("weight_block_size", "expected two integers [rows, cols]");
  }
  Fp8Quantization fp8;
  fp8.block_rows = block[0];
  fp8.block_cols = block[1];
  ASSIGN_OR_RETURN(std::optional<std::string> scheme, qf.OptionalString("activation_scheme"));
  fp8.activation_scheme = ValueOr<std::string>(scheme, "dynamic");
  ASSIGN_OR_RETURN(fp8.modules_to_not_convert, qf.StringList("modules_to_not_convert"));
  c.fp8_quantization = fp8;
  return absl::OkStatus();
}

// The `weights` arguments of one compressed-tensors config group (QuantizationArgs).
struct CtWeightArgs {
  int64_t num_bits = 0;
  std::string type, strategy;
  std::optional<int64_t> group_size;
  bool symmetric = true;
  bool dynamic = false;
  bool operator==(const CtWeightArgs&) const = default;
};

std::string Show(bool v) { return v ? "true" : "false"; }
std::string Show(int64_t v) { return absl::StrCat(v); }
std::string Show(const std::string& v) { return absl::StrCat("'", v, "'"); }

// INVALID_ARGUMENT naming field `key` unless its `value` is `want`.
template <typename T>
absl::Status Expect(const JsonFields& f, std::string_view key, const T& value, const T& want,
                    std::string_view why) {
  if (value == want) return absl::OkStatus();
  return f.Error(key, absl::StrCat("unsupported ", Show(value), " (", AsAbsl(why), ")"));
}

// One entry of `config_groups`: its targets and weight arguments, checked against what the
// `format` stores. compressed-tensors' QuantizationArgs defaults: symmetric true, dynamic false.
absl::StatusOr<CtWeightArgs> ParseCtGroup(const JsonFields& group, bool pack_quantized,
                                          std::vector<std::string>& targets) {
  ASSIGN_OR_RETURN(std::vector<std::string> group_targets, group.StringList("targets"));
  if (group_targets.empty()) return group.Error("targets", "missing or empty");
  targets.insert(targets.end(), group_targets.begin(), group_targets.end());
  ASSIGN_OR_RETURN(const nlohmann::json* weights_json, group.OptionalObject("weights"));
  if (weights_json == nullptr) return group.Error("weights", "missing");
  JsonFields w(*weights_json, group.source(), group.path() + "weights.");
  CtWeightArgs a;
  ASSIGN_OR_RETURN(a.num_bits, w.Int("num_bits"));
  ASSIGN_OR_RETURN(a.type, w.String("type"));
  ASSIGN_OR_RETURN(std::optional<std::string> strategy, w.OptionalString("strategy"));
  a.strategy = ValueOr<std::string>(strategy, "tensor");
  ASSIGN_OR_RETURN(a.group_size, w.OptionalInt("group_size"));
  ASSIGN_OR_RETURN(std::optional<bool> symmetric, w.OptionalBool("symmetric"));
  a.symmetric = ValueOr(symmetric, true);
  ASSIGN_OR_RETURN(std::optional<bool> dynamic, w.OptionalBool("dynamic"));
  a.dynamic = ValueOr(dynamic, false);
  if (w.Has("block_structure")) {
    return w.Error("block_structure", "block-wise compressed-tensors weights are not supported");
  }
  // Activation ordering "group" stores a `weight_g_idx` per layer; "weight" / "static" only
  // changed the order GPTQ visited the columns in, and the stored groups are contiguous.
  if (w.Has("actorder")) {
    const nlohmann::json& order = (*weights_json)["actorder"];
    if (!(order.is_boolean() && !order.get<bool>()) &&
        !(order.is_string() && (order == "weight" || order == "static"))) {
      return w.Error("actorder", absl::StrCat("unsupported ", order.dump(),
                                              " (group-wise activation ordering stores a "
                                              "weight_g_idx, which is not read; expected null, "
                                              "\"weight\" or \"static\")"));
    }
  }
  RETURN_IF_ERROR(Expect(w, "dynamic", a.dynamic, false, "weights are quantized statically"));
  if (pack_quantized) {
    RETURN_IF_ERROR(Expect<int64_t>(w, "num_bits", a.num_bits, 4, "pack-quantized reads 4 bits"));
    RETURN_IF_ERROR(Expect<std::string>(w, "type", a.type, "int", "expected int"));
    RETURN_IF_ERROR(Expect<std::string>(w, "strategy", a.strategy, "group", "expected group"));
    RETURN_IF_ERROR(Expect(w, "symmetric", a.symmetric, true,
                           "asymmetric int4 stores packed zero points, which are not read"));
    if (!a.group_size.has_value()) return w.Error("group_size", "missing");
    if (*a.group_size <= 0 || *a.group_size % 32 != 0) {
      return w.Error("group_size", absl::StrCat("unsupported ", *a.group_size,
                                                " (a positive multiple of 32 is needed)"));
    }
  } else {
    RETURN_IF_ERROR(Expect<int64_t>(w, "num_bits", a.num_bits, 8, "float-quantized reads fp8"));
    RETURN_IF_ERROR(Expect<std::string>(w, "type", a.type, "float", "expected float"));
    RETURN_IF_ERROR(Expect<std::string>(w, "strategy", a.strategy, "channel",
                                        "only per-channel fp8 scales are read"));
    RETURN_IF_ERROR(Expect(w, "symmetric", a.symmetric, true, "fp8 is symmetric"));
  }
  // Dynamic per-token activation quantization (FP8_DYNAMIC) is not applied: activations stay
  // in the compute dtype. Static activation scales would be tensors the loader does not read.
  ASSIGN_OR_RETURN(const nlohmann::json* inputs, group.OptionalObject("input_activations"));
  if (inputs != nullptr) {
    JsonFields in(*inputs, group.source(), group.path() + "input_activations.");
    ASSIGN_OR_RETURN(std::optional<bool> in_dynamic, in.OptionalBool("dynamic"));
    if (pack_quantized || !ValueOr(in_dynamic, false)) {
      return group.Error("input_activations",
                         pack_quantized ? "activation quantization is not supported with "
                                          "pack-quantized weights (expected null)"
                                        : "static activation scales are not supported (expected "
                                          "dynamic or null)");
    }
  }
  ASSIGN_OR_RETURN(const nlohmann::json* outputs, group.OptionalObject("output_activations"));
  if (outputs != nullptr) return group.Error("output_activations", "not supported");
  return a;
}

// compressed-tensors (llm-compressor): `pack-quantized` int4 groups (W4A16, Kimi-K2) or
// `float-quantized` per-channel fp8 (FP8_DYNAMIC), one weight scheme for all config groups.
absl::Status ParseCompressedTensors(const JsonFields& qf, const nlohmann::json& q, ModelConfig& c) {
  ASSIGN_OR_RETURN(std::string format, qf.String("format"));
  if (format != "pack-quantized" && format != "float-quantized") {
    return qf.Error("format", absl::StrCat("unsupported '", format,
                                           "' (expected pack-quantized or float-quantized)"));
  }
  const bool pack_quantized = format == "pack-quantized";
  ASSIGN_OR_RETURN(std::optional<std::string> status, qf.OptionalString("quantization_status"));
  if (status.has_value() && *status != "compressed") {
    return qf.Error("quantization_status",
                    absl::StrCat("unsupported '", *status, "' (expected compressed)"));
  }
  ASSIGN_OR_RETURN(const nlohmann::json* kv_scheme, qf.OptionalObject("kv_cache_scheme"));
  if (kv_scheme != nullptr)
    return qf.Error("kv_cache_scheme", "kv cache quantization is not supported");
  ASSIGN_OR_RETURN(const nlohmann::json* sparsity, qf.OptionalObject("sparsity_config"));
  if (sparsity != nullptr && !sparsity->empty()) {
    JsonFields sf(*sparsity, qf.source(), "quantization_config.sparsity_config.");
    ASSIGN_OR_RETURN(std::optional<std::string> sparse_format, sf.OptionalString("format"));
    if (ValueOr<std::string>(sparse_format, "dense") != "dense") {
      return sf.Error(
          "format", absl::StrCat("sparse checkpoints ('", *sparse_format, "') are not supported"));
    }
  }
  ASSIGN_OR_RETURN(const nlohmann::json* groups, qf.OptionalObject("config_groups"));
  if (groups == nullptr || groups->empty()) return qf.Error("config_groups", "missing or empty");
  std::vector<std::string> targets;
  std::optional<CtWeightArgs> args;
  std::string first_group;
  for (const auto& [name, group] : groups->items()) {
    const std::string path = absl::StrCat("quantization_config.config_groups.", name, ".");
    if (!group.is_object()) {
      return qf.Error(absl::StrCat("config_groups.", name), "expected an object");
    }
    JsonFields gf(group, qf.source(), path);
    ASSIGN_OR_RETURN(CtWeightArgs a, ParseCtGroup(gf, pack_quantized, targets));
    if (args.has_value() && !(a == *args)) {
      return gf.Error("weights", absl::StrCat("differs from the weights of ", first_group,
                                              " (one scheme for every layer is supported)"));
    }
    if (!args.has_value()) first_group = name;
    args = a;
  }
  (void)q;
  ASSIGN_OR_RETURN(std::vector<std::string> ignore, qf.StringList("ignore"));
  if (pack_quantized) {
    Int4Quantization int4;
    int4.format = Int4Quantization::Format::kCompressedTensors;
    int4.group_size = *args->group_size;
    int4.symmetric = true;
    int4.targets = std::move(targets);
    int4.ignore = std::move(ignore);
    c.int4_quantization = std::move(int4);
  } else {
    Fp8Quantization fp8;
    fp8.per_channel = true;
    fp8.block_rows = 1;
    fp8.block_cols = 0;  // the row length of each weight
    fp8.activation_scheme = "dynamic";
    fp8.targets = std::move(targets);
    fp8.ignore = std::move(ignore);
    c.fp8_quantization = std::move(fp8);
  }
  return absl::OkStatus();
}

// GPTQ's `dynamic` (GPTQModel, AutoRound): per-module overrides keyed by a regex that vLLM and
// GPTQModel match with re.match, "+:" (or no prefix) overriding the quantization arguments and
// "-:" leaving the module unquantized. Both quantizers write one for a quantized lm_head:
// GPTQModel {"lm_head": {"bits": 8, "group_size": 32, ...}} unless told otherwise (its looper
// adds that default), AutoRound {"+:.*lm_head.*": {"bits": 4, "group_size": 128, "sym": true}}.
// Only overrides of lm_head are read, and only ones that keep the layers' format: 4 bits and
// the config's group size (desc_act and sym need not agree: the loader reads g_idx and the zero
// points as stored). Validate refuses a key that also matches another Linear.
absl::Status ParseGptqDynamic(const JsonFields& qf, const nlohmann::json& dynamic,
                              Int4Quantization& int4) {
  if (!dynamic.is_object()) return qf.Error("dynamic", "expected an object of module patterns");
  bool include = false, exclude = false;
  for (const auto& [key, rule] : dynamic.items()) {
    absl::StatusOr<CompressedTensorsMatcher> m =
        CompressedTensorsMatcher::Create({GptqDynamicPattern(key)});
    if (!m.ok()) return qf.Error("dynamic", std::string(m.status().message()));
    if (!m->Matches("lm_head", /*is_linear=*/true)) {
      return qf.Error("dynamic", absl::StrCat("'", key,
                                              "' overrides modules other than lm_head; "
                                              "per-module overrides are supported for lm_head "
                                              "only"));
    }
    if (!rule.is_object()) return qf.Error(absl::StrCat("dynamic.", key), "expected an object");
    int4.gptq_dynamic.push_back(key);
    if (key.starts_with("-:")) {
      exclude = true;
      continue;
    }
    include = true;
    if (!int4.gptq_lm_head) continue;  // lm_head: false, so the override applies to nothing
    JsonFields rf(rule, qf.source(), absl::StrCat(qf.path(), "dynamic.", key, "."));
    ASSIGN_OR_RETURN(std::optional<int64_t> bits, rf.OptionalInt("bits"));
    if (bits.has_value() && *bits != 4) {
      return rf.Error("bits", absl::StrCat("unsupported ", *bits,
                                           " for lm_head (only 4-bit GPTQ is read; GPTQModel "
                                           "quantizes lm_head to 8 bits unless `dynamic` says "
                                           "otherwise)"));
    }
    ASSIGN_OR_RETURN(std::optional<int64_t> group, rf.OptionalInt("group_size"));
    if (group.has_value() && *group != int4.group_size) {
      return rf.Error("group_size",
                      absl::StrCat(*group, " differs from the layers' group_size ", int4.group_size,
                                   " (one group size for every layer is read)"));
    }
  }
  if (include && exclude) {
    // Which applies is the first in the object, an order nlohmann::json does not keep.
    return qf.Error("dynamic", "both overrides ('+:') and excludes ('-:') lm_head");
  }
  if (exclude) int4.gptq_lm_head = false;
  return absl::OkStatus();
}

// GPTQ int4 (AutoGPTQ / optimum / GPTQModel), as Qwen's GPTQ-Int4 releases: qweight, qzeros,
// scales and g_idx per Linear of the decoder layers, and of lm_head with `lm_head: true`.
absl::Status ParseGptq(const JsonFields& qf, const nlohmann::json& q, ModelConfig& c) {
  Int4Quantization int4;
  int4.format = Int4Quantization::Format::kGptq;
  int4.targets.clear();
  ASSIGN_OR_RETURN(int64_t bits, qf.Int("bits"));
  if (bits != 4) {
    return qf.Error("bits", absl::StrCat("unsupported ", bits, " (only 4-bit GPTQ is read)"));
  }
  ASSIGN_OR_RETURN(int4.group_size, qf.Int("group_size"));
  if (int4.group_size <= 0 || int4.group_size % 32 != 0) {
    return qf.Error("group_size", absl::StrCat("unsupported ", int4.group_size,
                                               int4.group_size == -1 ? " (one group per row)" : "",
                                               " (a positive multiple of 32 is needed)"));
  }
  ASSIGN_OR_RETURN(std::optional<bool> desc_act, qf.OptionalBool("desc_act"));
  int4.act_order = ValueOr(desc_act, false);
  ASSIGN_OR_RETURN(std::optional<bool> sym, qf.OptionalBool("sym"));
  int4.symmetric = ValueOr(sym, true);
  // AutoGPTQ / optimum write `checkpoint_format`; GPTQModel 2+ writes `format`.
  const char* format_key = qf.Has("checkpoint_format") ? "checkpoint_format" : "format";
  ASSIGN_OR_RETURN(std::optional<std::string> format, qf.OptionalString(format_key));
  const std::string fmt = ValueOr<std::string>(format, "gptq");
  if (fmt != "gptq" && fmt != "gptq_v2") {
    return qf.Error(format_key, absl::StrCat("unsupported '", fmt, "' (expected gptq or gptq_v2)"));
  }
  int4.gptq_zero_minus_one = fmt == "gptq";
  // GPTQModel and AutoRound write `lm_head: true` when they quantize lm_head (AutoGPTQ never
  // does): it is read in the layers' format, as vLLM's GPTQ configs read it.
  ASSIGN_OR_RETURN(std::optional<bool> lm_head, qf.OptionalBool("lm_head"));
  int4.gptq_lm_head = ValueOr(lm_head, false);
  ASSIGN_OR_RETURN(std::optional<std::string> pack_dtype, qf.OptionalString("pack_dtype"));
  if (ValueOr<std::string>(pack_dtype, "int32") != "int32") {
    return qf.Error("pack_dtype", absl::StrCat("unsupported '", *pack_dtype, "' (expected int32)"));
  }
  if (auto it = q.find("dynamic"); it != q.end() && !it->is_null() && !it->empty()) {
    RETURN_IF_ERROR(ParseGptqDynamic(qf, *it, int4));
  }
  if (auto it = q.find("modules_in_block_to_quantize"); it != q.end() && !it->is_null()) {
    bool ok = it->is_array();
    for (const nlohmann::json& set : ok ? *it : nlohmann::json::array()) {
      for (const nlohmann::json& name : set.is_array() ? set : nlohmann::json::array({set})) {
        ok &= name.is_string();
        if (name.is_string()) int4.gptq_modules.push_back(name.get<std::string>());
      }
    }
    if (!ok) {
      return qf.Error("modules_in_block_to_quantize", "expected a list of lists of module names");
    }
  }
  c.int4_quantization = std::move(int4);
  return absl::OkStatus();
}

absl::Status ParseQuantization(const JsonFields& f, ModelConfig& c) {
  ASSIGN_OR_RETURN(const nlohmann::json* q, f.OptionalObject("quantization_config"));
  if (q == nullptr) return absl::OkStatus();
  JsonFields qf(*q, f.source(), "quantization_config.");
  ASSIGN_OR_RETURN(std::string method, qf.String("quant_method"));
  if (method == "fp8") return ParseFp8Blocks(qf, c);
  if (method == "compressed-tensors") return ParseCompressedTensors(qf, *q, c);
  if (method == "gptq") return ParseGptq(qf, *q, c);
  return qf.Error("quant_method", absl::StrCat("unsupported quantization '", method,
                                               "' (expected fp8, compressed-tensors or gptq)"));
}

// The per-architecture part: attention flavour, MoE routing and layer placement.
absl::Status ParseArchitectureFields(const JsonFields& f, ModelConfig& c) {
  ASSIGN_OR_RETURN(std::optional<bool> attention_bias, f.OptionalBool("attention_bias"));
  switch (c.architecture) {
    case Architecture::kLlama:
      c.qkv_bias = c.o_proj_bias = ValueOr(attention_bias, false);
      return absl::OkStatus();
    case Architecture::kMixtral: {
      ASSIGN_OR_RETURN(c.num_experts, f.Int("num_local_experts"));
      ASSIGN_OR_RETURN(c.num_experts_per_tok, f.Int("num_experts_per_tok"));
      c.moe_intermediate_size = c.intermediate_size;
      c.norm_topk_prob = true;  // Mixtral softmaxes the selected logits only
      ASSIGN_OR_RETURN(c.sliding_window, f.OptionalInt("sliding_window"));
      return absl::OkStatus();
    }
    case Architecture::kQwen2Moe:
    case Architecture::kQwen3Moe: {
      const bool qwen2 = c.architecture == Architecture::kQwen2Moe;
      if (qwen2) {
        // Qwen2-MoE always has q/k/v bias; newer configs may spell it out as qkv_bias.
        ASSIGN_OR_RETURN(std::optional<bool> qkv_bias, f.OptionalBool("qkv_bias"));
        c.qkv_bias = ValueOr(qkv_bias, true);
      } else {
        c.qkv_bias = c.o_proj_bias = ValueOr(attention_bias, false);
        c.qk_norm = true;
      }
      // transformers 5 writes Qwen3-MoE's expert count as num_local_experts.
      ASSIGN_OR_RETURN(std::optional<int64_t> local_experts, f.OptionalInt("num_local_experts"));
      if (local_experts.has_value() && !f.Has("num_experts")) {
        c.num_experts = *local_experts;
      } else {
        ASSIGN_OR_RETURN(c.num_experts, f.Int("num_experts"));
      }
      ASSIGN_OR_RETURN(c.num_experts_per_tok, f.Int("num_experts_per_tok"));
      ASSIGN_OR_RETURN(c.moe_intermediate_size, f.Int("moe_intermediate_size"));
      if (qwen2) {
        ASSIGN_OR_RETURN(c.shared_expert_intermediate_size,
                         f.Int("shared_expert_intermediate_size"));
        c.n_shared_experts = c.shared_expert_intermediate_size > 0 ? 1 : 0;
        c.shared_expert_gate = c.shared_expert_intermediate_size > 0;
      }
      ASSIGN_OR_RETURN(std::optional<bool> norm, f.OptionalBool("norm_topk_prob"));
      c.norm_topk_prob = ValueOr(norm, false);
      ASSIGN_OR_RETURN(std::optional<int64_t> step, f.OptionalInt("decoder_sparse_step"));
      c.decoder_sparse_step = ValueOr<int64_t>(step, 1);
      ASSIGN_OR_RETURN(c.mlp_only_layers, f.IntOrIntList("mlp_only_layers"));
      ASSIGN_OR_RETURN(std::optional<bool> use_window, f.OptionalBool("use_sliding_window"));
      if (ValueOr(use_window, false)) {
        ASSIGN_OR_RETURN(int64_t window, f.Int("sliding_window"));
        c.sliding_window = window;
        ASSIGN_OR_RETURN(std::optional<int64_t> max_window, f.OptionalInt("max_window_layers"));
        c.max_window_layers = ValueOr<int64_t>(max_window, 0);
      }
      return absl::OkStatus();
    }
    case Architecture::kDeepseekV2:
    case Architecture::kDeepseekV3:
      break;
  }
  // DeepSeek-V2 / V3: MLA attention and group-limited routing.
  const bool v3 = c.architecture == Architecture::kDeepseekV3;
  c.qkv_bias = c.o_proj_bias = ValueOr(attention_bias, false);
  ASSIGN_OR_RETURN(c.q_lora_rank, f.OptionalInt("q_lora_rank"));
  ASSIGN_OR_RETURN(c.kv_lora_rank, f.Int("kv_lora_rank"));
  ASSIGN_OR_RETURN(c.qk_nope_head_dim, f.Int("qk_nope_head_dim"));
  ASSIGN_OR_RETURN(c.qk_rope_head_dim, f.Int("qk_rope_head_dim"));
  ASSIGN_OR_RETURN(c.v_head_dim, f.Int("v_head_dim"));
  if (c.kv_lora_rank <= 0) return f.Error("kv_lora_rank", "must be positive");
  c.head_dim = c.qk_nope_head_dim + c.qk_rope_head_dim;
  ASSIGN_OR_RETURN(std::optional<int64_t> mtp, f.OptionalInt("num_nextn_predict_layers"));
  c.num_nextn_predict_layers = ValueOr<int64_t>(mtp, 0);

  ASSIGN_OR_RETURN(std::optional<int64_t> experts, f.OptionalInt("n_routed_experts"));
  c.num_experts = ValueOr<int64_t>(experts, 0);
  if (c.num_experts == 0) return absl::OkStatus();  // a dense DeepSeek
  ASSIGN_OR_RETURN(c.num_experts_per_tok, f.Int("num_experts_per_tok"));
  ASSIGN_OR_RETURN(c.moe_intermediate_size, f.Int("moe_intermediate_size"));
  ASSIGN_OR_RETURN(std::optional<int64_t> shared, f.OptionalInt("n_shared_experts"));
  c.n_shared_experts = ValueOr<int64_t>(shared, 0);
  c.shared_expert_intermediate_size = c.n_shared_experts * c.moe_intermediate_size;
  ASSIGN_OR_RETURN(std::optional<bool> norm, f.OptionalBool("norm_topk_prob"));
  c.norm_topk_prob = ValueOr(norm, v3);
  ASSIGN_OR_RETURN(std::optional<std::string> scoring, f.OptionalString("scoring_func"));
  const std::string scoring_name = ValueOr<std::string>(scoring, v3 ? "sigmoid" : "softmax");
  if (scoring_name == "softmax") {
    c.scoring_func = MoeScoring::kSoftmax;
  } else if (scoring_name == "sigmoid") {
    c.scoring_func = MoeScoring::kSigmoid;
  } else {
    return f.Error("scoring_func",
                   absl::StrCat("unsupported '", scoring_name, "' (expected softmax or sigmoid)"));
  }
  ASSIGN_OR_RETURN(std::optional<std::string> topk, f.OptionalString("topk_method"));
  const std::string topk_name = ValueOr<std::string>(topk, v3 ? "noaux_tc" : "greedy");
  // "gready" is the default spelled in DeepSeek-V2's own configuration class.
  if (topk_name == "greedy" || topk_name == "gready") {
    c.topk_method = TopkMethod::kGreedy;
  } else if (topk_name == "group_limited_greedy") {
    c.topk_method = TopkMethod::kGroupLimitedGreedy;
  } else if (topk_name == "noaux_tc") {
    c.topk_method = TopkMethod::kNoauxTc;
  } else {
    return f.Error("topk_method",
                   absl::StrCat("unsupported '", topk_name,
                                "' (expected greedy, group_limited_greedy or noaux_tc)"));
  }
  c.e_score_correction_bias = c.topk_method == TopkMethod::kNoauxTc;
  ASSIGN_OR_RETURN(std::optional<int64_t> n_group, f.OptionalInt("n_group"));
  ASSIGN_OR_RETURN(std::optional<int64_t> topk_group, f.OptionalInt("topk_group"));
  c.n_group = ValueOr<int64_t>(n_group, 1);
  c.topk_group = ValueOr<int64_t>(topk_group, 1);
  ASSIGN_OR_RETURN(std::optional<double> scale, f.OptionalNumber("routed_scaling_factor"));
  c.routed_scaling_factor = ValueOr(scale, 1.0);
  ASSIGN_OR_RETURN(std::optional<int64_t> first_dense, f.OptionalInt("first_k_dense_replace"));
  c.first_k_dense_replace = ValueOr<int64_t>(first_dense, 0);
  ASSIGN_OR_RETURN(std::optional<int64_t> freq, f.OptionalInt("moe_layer_freq"));
  c.moe_layer_freq = ValueOr<int64_t>(freq, 1);
  return absl::OkStatus();
}

absl::StatusOr<Architecture> ParseArchitecture(const JsonFields& f, const nlohmann::json& json) {
  auto it = json.find("architectures");
  if (it == json.end() || it->is_null()) return f.Error("architectures", "missing");
  if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
    return f.Error("architectures", "expected a non-empty list of class names");
  }
  const std::string name = (*it)[0].get<std::string>();
  std::optional<Architecture> arch = ArchitectureFromName(name);
  if (!arch.has_value()) {
    std::string known;
    for (Architecture a : AllArchitectures()) {
      absl::StrAppend(&known, known.empty() ? "" : ", ", AsAbsl(ArchitectureName(a)));
    }
    return f.Error("architectures",
                   absl::StrCat("unknown architecture '", name, "' (supported: ", known, ")"));
  }
  return *arch;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& json,
                                             std::string_view source_name) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(source_name), ": expected a JSON object, got ", json.type_name()));
  }
  JsonFields f(json, source_name);
  ModelConfig c;
  ASSIGN_OR_RETURN(c.architecture, ParseArchitecture(f, json));
  ASSIGN_OR_RETURN(std::optional<std::string> model_type, f.OptionalString("model_type"));
  c.model_type = ValueOr<std::string>(model_type, "");
  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, f.Int("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads, f.Int("num_attention_heads"));
  ASSIGN_OR_RETURN(std::optional<int64_t> kv_heads, f.OptionalInt("num_key_value_heads"));
  c.num_key_value_heads = ValueOr(kv_heads, c.num_attention_heads);
  ASSIGN_OR_RETURN(c.max_position_embeddings, f.Int("max_position_embeddings"));
  ASSIGN_OR_RETURN(c.rms_norm_eps, f.Number("rms_norm_eps"));
  ASSIGN_OR_RETURN(std::optional<bool> tie, f.OptionalBool("tie_word_embeddings"));
  c.tie_word_embeddings = ValueOr(tie, false);
  ASSIGN_OR_RETURN(std::optional<std::string> act, f.OptionalString("hidden_act"));
  c.hidden_act = ValueOr<std::string>(act, "silu");
  ASSIGN_OR_RETURN(c.torch_dtype, ParseTorchDType(f));
  ASSIGN_OR_RETURN(c.bos_token_id, f.OptionalInt("bos_token_id"));
  ASSIGN_OR_RETURN(c.eos_token_ids, f.IntOrIntList("eos_token_id"));

  ASSIGN_OR_RETURN(std::optional<int64_t> head_dim, f.OptionalInt("head_dim"));
  if (head_dim.has_value()) {
    c.head_dim = *head_dim;
  } else if (c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0) {
    c.head_dim = c.hidden_size / c.num_attention_heads;
  } else {
    return f.Error("num_attention_heads",
                   absl::StrCat(c.num_attention_heads, " does not divide hidden_size ",
                                c.hidden_size, " and no head_dim is given"));
  }

  const double default_theta = c.architecture == Architecture::kMixtral ? 1e6 : 10000.0;
  RETURN_IF_ERROR(ParseRope(f, default_theta, c));
  RETURN_IF_ERROR(ParseQuantization(f, c));
  RETURN_IF_ERROR(ParseArchitectureFields(f, c));
  RETURN_IF_ERROR(c.Validate(source_name));
  return c;
}

}  // namespace expertmesh::model
