#include "model/config/weight_layout.h"

#include "absl/strings/str_cat.h"
#include "model/config/module_filter.h"

namespace expertmesh::model {
namespace {

// Appends specs while knowing which weights an fp8 checkpoint quantizes: the linear layers of
// attention and of the (dense, shared and routed) MLPs. Embeddings, norms, routers and lm_head
// stay in the checkpoint dtype, as in DeepSeek-V3.
class SpecList {
 public:
  explicit SpecList(const ModelConfig& config) : config_(config) {
    if (config.fp8_quantization.has_value()) {
      // Validate() compiled these patterns already, so this cannot fail.
      unconverted_ = ModuleFilter::Create(config.fp8_quantization->modules_to_not_convert)
                         .value_or(ModuleFilter());
    }
  }

  // A tensor never quantized (norm, bias, router, embedding).
  void Plain(std::string name, std::vector<int64_t> shape, bool fp32 = false) {
    specs_.push_back({std::move(name), std::move(shape), fp32, false});
  }

  // A Linear weight [out, in]; fp8 with its scale_inv when the config says so and does not
  // name the module in modules_to_not_convert.
  void Linear(const std::string& prefix, int64_t out, int64_t in, bool bias = false) {
    const std::string weight = prefix + ".weight";
    if (config_.fp8_quantization.has_value() && !unconverted_.Excludes(prefix)) {
      const Fp8Quantization& q = *config_.fp8_quantization;
      specs_.push_back({weight, {out, in}, false, true});
      specs_.push_back({weight + "_scale_inv",
                        {CeilDiv(out, q.block_rows), CeilDiv(in, q.block_cols)},
                        true,
                        false});
    } else {
      specs_.push_back({weight, {out, in}, false, false});
    }
    if (bias) Plain(prefix + ".bias", {out});
  }

  // SiLU-gated MLP: gate_proj and up_proj [width, hidden], down_proj [hidden, width].
  void GatedMlp(const std::string& prefix, int64_t width) {
    const int64_t hidden = config_.hidden_size;
    Linear(prefix + ".gate_proj", width, hidden);
    Linear(prefix + ".up_proj", width, hidden);
    Linear(prefix + ".down_proj", hidden, width);
  }

  std::vector<TensorSpec> Take() { return std::move(specs_); }

 private:
  static int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

  const ModelConfig& config_;
  ModuleFilter unconverted_;
  std::vector<TensorSpec> specs_;
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
    out.Plain(p + "gate.weight", {c.num_experts, hidden});
    for (int64_t e = 0; e < c.num_experts; ++e) {
      const std::string ep = absl::StrCat(p, "experts.", e, ".");
      out.Linear(ep + "w1", c.moe_intermediate_size, hidden);
      out.Linear(ep + "w2", hidden, c.moe_intermediate_size);
      out.Linear(ep + "w3", c.moe_intermediate_size, hidden);
    }
    return;
  }
  const std::string p = layer + "mlp.";
  out.Plain(p + "gate.weight", {c.num_experts, hidden});
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
  if (c.shared_expert_gate) out.Plain(p + "shared_expert_gate.weight", {1, hidden});
}

}  // namespace

int64_t TensorSpec::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

DType CheckpointDType(const TensorSpec& spec, DType dtype) {
  if (spec.float32_in_checkpoint) return DType::kF32;
  if (spec.fp8_block_quantized) return DType::kF8E4M3;
  return dtype;
}

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
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
  if (!c.tie_word_embeddings) out.Plain("lm_head.weight", {c.vocab_size, c.hidden_size});
  return out.Take();
}

}  // namespace expertmesh::model
