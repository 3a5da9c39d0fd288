#include "model/config/weight_layout.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "model/config/module_filter.h"

namespace expertmesh::model {
namespace {

// Appends specs while knowing which Linear weights a quantized checkpoint stores quantized: for
// fp8 blocks and GPTQ the linear layers of attention and of the (dense, shared and routed) MLPs,
// and for GPTQ lm_head too with `lm_head: true`; for compressed-tensors the Linear modules its
// targets and ignore list select (lm_head included, in int4). Embeddings, norms and routers
// stay in the checkpoint dtype, and lm_head in fp8 checkpoints.
class SpecList {
 public:
  explicit SpecList(const ModelConfig& config) : config_(config) {
    // Validate() compiled these patterns already, so this cannot fail.
    if (config.fp8_quantization.has_value()) {
      unconverted_ = ModuleFilter::Create(config.fp8_quantization->modules_to_not_convert)
                         .value_or(ModuleFilter());
    }
    const std::vector<std::string>* targets = nullptr;
    const std::vector<std::string>* ignore = nullptr;
    if (config.int4_quantization.has_value()) {
      targets = &config.int4_quantization->targets;
      ignore = &config.int4_quantization->ignore;
    } else if (config.fp8_quantization.has_value()) {
      targets = &config.fp8_quantization->targets;
      ignore = &config.fp8_quantization->ignore;
    }
    if (targets != nullptr) {
      ct_targets_ = CompressedTensorsMatcher::Create(*targets).value_or(CompressedTensorsMatcher());
      ct_ignore_ = CompressedTensorsMatcher::Create(*ignore).value_or(CompressedTensorsMatcher());
    }
  }

  // A tensor never quantized (norm, bias, router, embedding).
  void Plain(std::string name, std::vector<int64_t> shape, bool fp32 = false) {
    TensorSpec spec;
    spec.name = std::move(name);
    spec.shape = std::move(shape);
    spec.float32_in_checkpoint = fp32;
    specs_.push_back(std::move(spec));
  }

  // A Linear that is never quantized (a router, an fp8 checkpoint's lm_head); `is_linear` false
  // for modules that are not torch.nn.Linear (DeepSeek's MoEGate), which are not listed in
  // LinearLayers.
  void PlainLinear(const std::string& prefix, int64_t out, int64_t in, bool is_linear = true) {
    Plain(prefix + ".weight", {out, in});
    if (is_linear) {
      linears_.push_back({prefix, out, in, false, LinearFormat::kPlain, /*always_plain=*/true});
    }
  }

  // A Linear weight [out, in] in the format the config stores it in.
  void Linear(const std::string& prefix, int64_t out, int64_t in, bool bias = false) {
    const LinearFormat format = FormatOf(prefix);
    linears_.push_back({prefix, out, in, bias, format, false});
    const std::string weight = prefix + ".weight";
    switch (format) {
      case LinearFormat::kPlain:
        Plain(weight, {out, in});
        break;
      case LinearFormat::kFp8Block: {
        const Fp8Quantization& q = *config_.fp8_quantization;
        Push({.name = weight, .shape = {out, in}, .fp8_block_quantized = true});
        Push({.name = weight + "_scale_inv",
              .shape = {CeilDiv(out, q.block_rows), CeilDiv(in, q.block_cols)},
              .float32_in_checkpoint = true,
              .parameters = 0});
        break;
      }
      case LinearFormat::kFp8Channel:
        Push({.name = weight, .shape = {out, in}, .fp8_block_quantized = true});
        Push({.name = weight + "_scale",
              .shape = {out, 1},
              .any_float_dtype = true,
              .parameters = 0,
              .loaded_bytes = static_cast<uint64_t>(out) * 4});
        break;
      case LinearFormat::kInt4CompressedTensors: {
        // compressed-tensors pack_to_int32: 8 consecutive input features per int32.
        const int64_t groups = in / config_.int4_quantization->group_size;
        Push({.name = prefix + ".weight_packed",
              .shape = {out, in / 8},
              .fixed_dtype = DType::kI32,
              .parameters = out * in});
        Push({.name = prefix + ".weight_scale",
              .shape = {out, groups},
              .any_float_dtype = true,
              .parameters = 0,
              .loaded_bytes = static_cast<uint64_t>(out * groups) * 4});
        Push({.name = prefix + ".weight_shape",
              .shape = {2},
              .fixed_dtype = DType::kI64,
              .parameters = 0,
              .loaded_bytes = 0});
        break;
      }
      case LinearFormat::kInt4Gptq: {
        // AutoGPTQ's QuantLinear: qweight packs 8 consecutive input rows per int32, qzeros 8
        // consecutive output columns; scales and zeros are per group of input rows.
        const Int4Quantization& q = *config_.int4_quantization;
        const int64_t groups = in / q.group_size;
        const uint64_t grid_bytes = static_cast<uint64_t>(out * groups) * 4;
        Push({.name = prefix + ".qweight",
              .shape = {in / 8, out},
              .fixed_dtype = DType::kI32,
              .parameters = out * in});
        Push({.name = prefix + ".qzeros",
              .shape = {groups, out / 8},
              .fixed_dtype = DType::kI32,
              .parameters = 0,
              .loaded_bytes = q.symmetric ? 0 : grid_bytes});
        Push({.name = prefix + ".scales",
              .shape = {groups, out},
              .any_float_dtype = true,
              .preferred_dtype = DType::kF16,
              .parameters = 0,
              .loaded_bytes = grid_bytes});
        Push({.name = prefix + ".g_idx",
              .shape = {in},
              .fixed_dtype = DType::kI32,
              .optional = !q.act_order,
              .parameters = 0,
              .loaded_bytes = q.act_order ? static_cast<uint64_t>(in) * 4 : 0});
        if (!bias) {
          // AutoGPTQ writes a bias for every Linear; the loader accepts one of zeros.
          Push({.name = prefix + ".bias",
                .shape = {out},
                .any_float_dtype = true,
                .optional = true,
                .parameters = 0,
                .loaded_bytes = 0});
        }
        break;
      }
    }
    if (bias) Plain(prefix + ".bias", {out});
  }

  // lm_head [vocab, hidden]: int4 when the config quantizes it (GPTQ `lm_head: true`, or
  // compressed-tensors targets that select it), plain otherwise; fp8 checkpoints keep it plain.
  void LmHead(int64_t vocab, int64_t hidden) {
    if (FormatOf("lm_head") == LinearFormat::kPlain) {
      PlainLinear("lm_head", vocab, hidden);
    } else {
      Linear("lm_head", vocab, hidden);
    }
  }

  // SiLU-gated MLP: gate_proj and up_proj [width, hidden], down_proj [hidden, width].
  void GatedMlp(const std::string& prefix, int64_t width) {
    const int64_t hidden = config_.hidden_size;
    Linear(prefix + ".gate_proj", width, hidden);
    Linear(prefix + ".up_proj", width, hidden);
    Linear(prefix + ".down_proj", hidden, width);
  }

  std::vector<TensorSpec> TakeSpecs() { return std::move(specs_); }
  std::vector<LinearSpec> TakeLinears() { return std::move(linears_); }

 private:
  static int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

  void Push(TensorSpec spec) { specs_.push_back(std::move(spec)); }

  LinearFormat FormatOf(const std::string& module) const {
    if (module == "lm_head") {
      if (!config_.int4_quantization.has_value()) return LinearFormat::kPlain;
      const Int4Quantization& q = *config_.int4_quantization;
      if (q.format == Int4Quantization::Format::kCompressedTensors) {
        return CtSelects(module) ? LinearFormat::kInt4CompressedTensors : LinearFormat::kPlain;
      }
      // Outside any decoder layer: modules_in_block_to_quantize does not name it.
      return q.gptq_lm_head ? LinearFormat::kInt4Gptq : LinearFormat::kPlain;
    }
    if (config_.fp8_quantization.has_value()) {
      if (config_.fp8_quantization->per_channel) {
        return CtSelects(module) ? LinearFormat::kFp8Channel : LinearFormat::kPlain;
      }
      return unconverted_.Excludes(module) ? LinearFormat::kPlain : LinearFormat::kFp8Block;
    }
    if (!config_.int4_quantization.has_value()) return LinearFormat::kPlain;
    const Int4Quantization& q = *config_.int4_quantization;
    if (q.format == Int4Quantization::Format::kCompressedTensors) {
      return CtSelects(module) ? LinearFormat::kInt4CompressedTensors : LinearFormat::kPlain;
    }
    if (!q.gptq_modules.empty()) {
      // modules_in_block_to_quantize names modules relative to their decoder layer.
      constexpr std::string_view kLayers = "model.layers.";
      const size_t dot = module.find('.', kLayers.size());
      const std::string relative =
          module.starts_with(kLayers) && dot != std::string::npos ? module.substr(dot + 1) : module;
      if (std::find(q.gptq_modules.begin(), q.gptq_modules.end(), relative) ==
          q.gptq_modules.end()) {
        return LinearFormat::kPlain;
      }
    }
    return LinearFormat::kInt4Gptq;
  }

  // Whether compressed-tensors' targets and ignore entries select the Linear `module`.
  bool CtSelects(const std::string& module) const {
    return ct_targets_.Matches(module, true) && !ct_ignore_.Matches(module, true);
  }

  const ModelConfig& config_;
  ModuleFilter unconverted_;
  CompressedTensorsMatcher ct_targets_, ct_ignore_;
  std::vector<TensorSpec> specs_;
  std::vector<LinearSpec> linears_;
};

// q/k/v/o of grouped-query attention (Llama, Mixtral, Qwen).
void AddGqaAttention(const ModelConfig& c, const std::string& p, SpecList& out) {
  const int64_t q_width = c.num_attention_heads * c.head_dim;
  const int64_t kv_width = c.num_key_value_heads * c.head_dim;
  out.Linear(p + "q_proj", q_width, c.hidden_size, c.qkv_bias);
  out.Linear(p + "k_proj", kv_width, c.hidden_size, c.qkv_bias);
  out.Linear(p + "v_proj", kv_width, c.hidden_size, c.qkv_bias);
  out.Linear(p + "o_proj", c.hidden_size, q_width, c.o_proj_bias);
  if (c.qk_norm) {
    out.Plain(p + "q_norm.weight", {c.head_dim});
    out.Plain(p + "k_norm.weight", {c.head_dim});
  }
}

// Multi-head latent attention (DeepSeek-V2/V3).
void AddMlaAttention(const ModelConfig& c, const std::string& p, SpecList& out) {
  const int64_t q_head = c.qk_nope_head_dim + c.qk_rope_head_dim;
  if (c.q_lora_rank.has_value()) {
    out.Linear(p + "q_a_proj", *c.q_lora_rank, c.hidden_size, c.qkv_bias);
    out.Plain(p + "q_a_layernorm.weight", {*c.q_lora_rank});
    out.Linear(p + "q_b_proj", c.num_attention_heads * q_head, *c.q_lora_rank);
  } else {
    out.Linear(p + "q_proj", c.num_attention_heads * q_head, c.hidden_size);
  }
  out.Linear(p + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size,
             c.qkv_bias);
  out.Plain(p + "kv_a_layernorm.weight", {c.kv_lora_rank});
  out.Linear(p + "kv_b_proj", c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim),
             c.kv_lora_rank);
  out.Linear(p + "o_proj", c.hidden_size, c.num_attention_heads * c.v_head_dim, c.o_proj_bias);
}

void AddMoe(const ModelConfig& c, const std::string& layer, SpecList& out) {
  const int64_t hidden = c.hidden_size;
  if (c.architecture == Architecture::kMixtral) {
    const std::string p = layer + "block_sparse_moe.";
    out.PlainLinear(p + "gate", c.num_experts, hidden);
    for (int64_t e = 0; e < c.num_experts; ++e) {
      const std::string ep = absl::StrCat(p, "experts.", e, ".");
      out.Linear(ep + "w1", c.moe_intermediate_size, hidden);
      out.Linear(ep + "w2", hidden, c.moe_intermediate_size);
      out.Linear(ep + "w3", c.moe_intermediate_size, hidden);
    }
    return;
  }
  const std::string p = layer + "mlp.";
  // DeepSeek's router is a MoEGate module, Qwen's a torch.nn.Linear.
  out.PlainLinear(p + "gate", c.num_experts, hidden, !c.UsesMla());
  if (c.e_score_correction_bias) {
    out.Plain(p + "gate.e_score_correction_bias", {c.num_experts}, /*fp32=*/true);
  }
  for (int64_t e = 0; e < c.num_experts; ++e) {
    out.GatedMlp(absl::StrCat(p, "experts.", e), c.moe_intermediate_size);
  }
  if (c.shared_expert_intermediate_size > 0) {
    if (c.architecture == Architecture::kQwen2Moe) {
      out.GatedMlp(p + "shared_expert", c.shared_expert_intermediate_size);
    } else {
      out.GatedMlp(p + "shared_experts", c.shared_expert_intermediate_size);
    }
  }
  if (c.shared_expert_gate) out.PlainLinear(p + "shared_expert_gate", 1, hidden);
}

}  // namespace

int64_t TensorSpec::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

DType CheckpointDType(const TensorSpec& spec, DType dtype) {
  if (spec.fixed_dtype.has_value()) return *spec.fixed_dtype;
  if (spec.float32_in_checkpoint) return DType::kF32;
  if (spec.fp8_block_quantized) return DType::kF8E4M3;
  if (spec.preferred_dtype.has_value()) return *spec.preferred_dtype;
  return dtype;
}

bool CheckpointDTypeMatches(const TensorSpec& spec, DType dtype, DType stored) {
  if (spec.any_float_dtype) {
    return stored == DType::kF32 || stored == DType::kBF16 || stored == DType::kF16;
  }
  return stored == CheckpointDType(spec, dtype);
}

bool CompressedTensorsQuantizes(const ModelConfig& config, std::string_view module) {
  const std::vector<std::string>* targets = nullptr;
  const std::vector<std::string>* ignore = nullptr;
  if (config.int4_quantization.has_value() &&
      config.int4_quantization->format == Int4Quantization::Format::kCompressedTensors) {
    targets = &config.int4_quantization->targets;
    ignore = &config.int4_quantization->ignore;
  } else if (config.fp8_quantization.has_value() && config.fp8_quantization->per_channel) {
    targets = &config.fp8_quantization->targets;
    ignore = &config.fp8_quantization->ignore;
  } else {
    return false;
  }
  // Compiled per call: the lists are a few entries, and ExpectedTensors is not on a hot path.
  absl::StatusOr<CompressedTensorsMatcher> t = CompressedTensorsMatcher::Create(*targets);
  absl::StatusOr<CompressedTensorsMatcher> i = CompressedTensorsMatcher::Create(*ignore);
  if (!t.ok() || !i.ok()) return false;
  return t->Matches(module, /*is_linear=*/true) && !i->Matches(module, /*is_linear=*/true);
}

namespace {

SpecList BuildSpecs(const ModelConfig& c) {
  SpecList out(c);
  out.Plain("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string lp = absl::StrCat("model.layers.", layer, ".");
    out.Plain(lp + "input_layernorm.weight", {c.hidden_size});
    if (c.UsesMla()) {
      AddMlaAttention(c, lp + "self_attn.", out);
    } else {
      AddGqaAttention(c, lp + "self_attn.", out);
    }
    out.Plain(lp + "post_attention_layernorm.weight", {c.hidden_size});
    if (c.IsMoeLayer(static_cast<int>(layer))) {
      AddMoe(c, lp, out);
    } else {
      out.GatedMlp(lp + "mlp", c.intermediate_size);
    }
  }
  out.Plain("model.norm.weight", {c.hidden_size});
  if (!c.tie_word_embeddings) out.LmHead(c.vocab_size, c.hidden_size);
  return out;
}

}  // namespace

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) { return BuildSpecs(c).TakeSpecs(); }

std::vector<LinearSpec> LinearLayers(const ModelConfig& c) { return BuildSpecs(c).TakeLinears(); }

}  // namespace expertmesh::model
