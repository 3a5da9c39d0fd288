// Loading helpers shared by the per-architecture builders.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/models/decoder_model.h"

namespace expertmesh::models {

std::string LayerPrefix(int layer) { return absl::StrCat("model.layers.", layer, "."); }

absl::StatusOr<std::unique_ptr<AttentionBlock>> LoadGqaAttention(const model::ModelConfig& c,
                                                                 WeightLoader& w,
                                                                 const std::string& p) {
  const int64_t hd = c.head_dim, h = c.hidden_size;
  const int64_t qw = c.num_attention_heads * hd, kvw = c.num_key_value_heads * hd;
  GqaAttentionWeights a;
  ASSIGN_OR_RETURN(a.q, w.Get(p + "q_proj.weight", {qw, h}));
  ASSIGN_OR_RETURN(a.k, w.Get(p + "k_proj.weight", {kvw, h}));
  ASSIGN_OR_RETURN(a.v, w.Get(p + "v_proj.weight", {kvw, h}));
  ASSIGN_OR_RETURN(a.o, w.Get(p + "o_proj.weight", {h, qw}));
  if (c.qkv_bias) {
    ASSIGN_OR_RETURN(a.q_bias, w.Get(p + "q_proj.bias", {qw}));
    ASSIGN_OR_RETURN(a.k_bias, w.Get(p + "k_proj.bias", {kvw}));
    ASSIGN_OR_RETURN(a.v_bias, w.Get(p + "v_proj.bias", {kvw}));
  }
  if (c.o_proj_bias) {
    ASSIGN_OR_RETURN(a.o_bias, w.Get(p + "o_proj.bias", {h}));
  }
  if (c.qk_norm) {
    ASSIGN_OR_RETURN(a.q_norm, w.Get(p + "q_norm.weight", {hd}));
    ASSIGN_OR_RETURN(a.k_norm, w.Get(p + "k_norm.weight", {hd}));
  }
  GqaAttentionShape s;
  s.heads = c.num_attention_heads;
  s.kv_heads = c.num_key_value_heads;
  s.head_dim = hd;
  s.norm_eps = static_cast<float>(c.rms_norm_eps);
  s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  s.rope = {runtime::RopeStyle::kNeox, static_cast<int>(hd), 0};
  return MakeGqaAttention(std::move(a), s);
}

absl::StatusOr<GatedMlpWeights> LoadGatedMlp(const model::ModelConfig& c, WeightLoader& w,
                                             const std::string& p, int64_t inter, const char* gate,
                                             const char* up, const char* down) {
  GatedMlpWeights m;
  ASSIGN_OR_RETURN(m.gate_up,
                   w.ConcatRows({absl::StrCat(p, gate, ".weight"), absl::StrCat(p, up, ".weight")},
                                {inter, inter}, c.hidden_size));
  ASSIGN_OR_RETURN(m.down, w.Get(absl::StrCat(p, down, ".weight"), {c.hidden_size, inter}));
  return m;
}

absl::StatusOr<MoeWeights> LoadExperts(const model::ModelConfig& c, WeightLoader& w,
                                       const std::string& p, const char* gate, const char* up,
                                       const char* down) {
  MoeWeights m;
  ASSIGN_OR_RETURN(m.router, w.Get(p + "gate.weight", {c.num_experts, c.hidden_size}));
  if (c.e_score_correction_bias) {
    ASSIGN_OR_RETURN(m.router_bias, w.GetF32(p + "gate.e_score_correction_bias", {c.num_experts}));
  }
  for (int64_t e = 0; e < c.num_experts; ++e) {
    ASSIGN_OR_RETURN(GatedMlpWeights x, LoadGatedMlp(c, w, absl::StrCat(p, "experts.", e, "."),
                                                     c.moe_intermediate_size, gate, up, down));
    m.gate_up.push_back(std::move(x.gate_up));
    m.down.push_back(std::move(x.down));
  }
  return m;
}

runtime::MoeRoutingParams SoftmaxRouting(const model::ModelConfig& c) {
  runtime::MoeRoutingParams r;
  r.scoring = runtime::MoeScoring::kSoftmax;
  r.top_k = static_cast<int>(c.num_experts_per_tok);
  r.norm_topk_prob = c.norm_topk_prob;
  return r;
}

absl::Status LoadLayerNorms(const model::ModelConfig& c, WeightLoader& w, int layer,
                            DecoderLayer& out) {
  const std::string p = LayerPrefix(layer);
  ASSIGN_OR_RETURN(out.input_norm, w.Get(p + "input_layernorm.weight", {c.hidden_size}));
  ASSIGN_OR_RETURN(out.post_norm, w.Get(p + "post_attention_layernorm.weight", {c.hidden_size}));
  return absl::OkStatus();
}

KvCacheSpec GqaKvSpec(const model::ModelConfig& c) {
  KvCacheSpec s;
  s.num_layers = c.num_hidden_layers;
  s.kv_heads = c.num_key_value_heads;
  s.k_dim = s.v_dim = c.head_dim;
  return s;
}

absl::StatusOr<runtime::RopeScaling> RuntimeRopeScaling(const model::ModelConfig& c) {
  runtime::RopeScaling r;
  r.theta = c.rope_theta;
  const model::RopeScaling& s = c.rope_scaling;
  r.factor = s.factor;
  r.original_max_position_embeddings = s.original_max_position_embeddings;
  switch (s.type) {
    case model::RopeScalingType::kNone:
      r.type = runtime::RopeScalingType::kDefault;
      r.factor = 1.0;
      break;
    case model::RopeScalingType::kLinear:
      r.type = runtime::RopeScalingType::kLinear;
      break;
    case model::RopeScalingType::kYarn:
      r.type = runtime::RopeScalingType::kYarn;
      r.beta_fast = s.beta_fast;
      r.beta_slow = s.beta_slow;
      r.mscale = s.mscale;
      r.mscale_all_dim = s.mscale_all_dim;
      r.attention_factor = s.attention_factor;
      if (r.original_max_position_embeddings == 0) {
        r.original_max_position_embeddings = c.max_position_embeddings;
      }
      break;
    case model::RopeScalingType::kLlama3:
      r.type = runtime::RopeScalingType::kLlama3;
      r.low_freq_factor = s.low_freq_factor;
      r.high_freq_factor = s.high_freq_factor;
      break;
    case model::RopeScalingType::kDynamic:
      return absl::UnimplementedError(
          "rope_scaling type \"dynamic\" is not implemented (its frequencies depend on the "
          "sequence length)");
  }
  return r;
}

}  // namespace expertmesh::models
