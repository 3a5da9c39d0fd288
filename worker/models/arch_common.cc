// Loading helpers shared by the per-architecture builders.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/models/decoder_model.h"

namespace expertmesh::models {

std::string LayerPrefix(int layer) { return absl::StrCat("model.layers.", layer, "."); }

absl::StatusOr<GqaHeadShard> ShardGqaHeads(const model::ModelConfig& c,
                                           const model::ParallelConfig& shard) {
  const int tp = shard.tp;
  GqaHeadShard out;
  ASSIGN_OR_RETURN(
      out.q, model::EvenSplit(c.num_attention_heads, tp, shard.TpRank(), "num_attention_heads"));
  const int64_t kvh = c.num_key_value_heads;
  if (kvh % tp == 0) {
    ASSIGN_OR_RETURN(out.kv, model::EvenSplit(kvh, tp, shard.TpRank(), "num_key_value_heads"));
  } else if (tp % kvh == 0) {
    // Fewer kv heads than ranks: each rank keeps the one kv head its query heads read.
    const int64_t group = c.num_attention_heads / kvh;
    out.kv = {out.q.begin / group, 1};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("num_key_value_heads (", kvh, ") and tp (", tp, ") do not divide each other"));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<AttentionBlock>> LoadGqaAttention(const model::ModelConfig& c,
                                                                 WeightLoader& w,
                                                                 const std::string& p) {
  const int64_t hd = c.head_dim, h = c.hidden_size;
  const int64_t qw = c.num_attention_heads * hd, kvw = c.num_key_value_heads * hd;
  ASSIGN_OR_RETURN(GqaHeadShard heads, ShardGqaHeads(c, w.shard()));
  const int64_t q0 = heads.q.begin * hd, qn = heads.q.count * hd;
  const int64_t k0 = heads.kv.begin * hd, kn = heads.kv.count * hd;
  GqaAttentionWeights a;
  // Column-parallel q/k/v (rows of the weights), row-parallel o (its columns).
  ASSIGN_OR_RETURN(a.q, w.GetRows(p + "q_proj.weight", {qw, h}, q0, qn));
  ASSIGN_OR_RETURN(a.k, w.GetRows(p + "k_proj.weight", {kvw, h}, k0, kn));
  ASSIGN_OR_RETURN(a.v, w.GetRows(p + "v_proj.weight", {kvw, h}, k0, kn));
  ASSIGN_OR_RETURN(a.o, w.GetCols(p + "o_proj.weight", {h, qw}, q0, qn));
  if (c.qkv_bias) {
    ASSIGN_OR_RETURN(a.q_bias, w.GetRows(p + "q_proj.bias", {qw}, q0, qn));
    ASSIGN_OR_RETURN(a.k_bias, w.GetRows(p + "k_proj.bias", {kvw}, k0, kn));
    ASSIGN_OR_RETURN(a.v_bias, w.GetRows(p + "v_proj.bias", {kvw}, k0, kn));
  }
  // The bias of a row-parallel projection is added once, by tp rank 0.
  if (c.o_proj_bias && w.shard().TpRank() == 0) {
    ASSIGN_OR_RETURN(a.o_bias, w.Get(p + "o_proj.bias", {h}));
  }
  if (c.qk_norm) {
    ASSIGN_OR_RETURN(a.q_norm, w.Get(p + "q_norm.weight", {hd}));
    ASSIGN_OR_RETURN(a.k_norm, w.Get(p + "k_norm.weight", {hd}));
  }
  GqaAttentionShape s;
  s.heads = heads.q.count;
  s.kv_heads = heads.kv.count;
  s.head_dim = hd;
  s.norm_eps = static_cast<float>(c.rms_norm_eps);
  s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  s.rope = {kernels::RopeStyle::kNeox, static_cast<int>(hd), 0};
  return MakeGqaAttention(std::move(a), s);
}

absl::StatusOr<GatedMlpWeights> LoadGatedMlp(const model::ModelConfig& c, WeightLoader& w,
                                             const std::string& p, int64_t inter, const char* gate,
                                             const char* up, const char* down) {
  const model::ParallelConfig& shard = w.shard();
  const std::string down_name = absl::StrCat(p, down, ".weight");
  ASSIGN_OR_RETURN(model::IndexRange slice,
                   model::EvenSplit(inter, shard.tp, shard.TpRank(),
                                    absl::StrCat(down_name, " intermediate size")));
  GatedMlpWeights m;
  ASSIGN_OR_RETURN(
      m.gate_up,
      w.ConcatRowSlices({{absl::StrCat(p, gate, ".weight"), inter, slice.begin, slice.count},
                         {absl::StrCat(p, up, ".weight"), inter, slice.begin, slice.count}},
                        c.hidden_size));
  ASSIGN_OR_RETURN(m.down, w.GetCols(down_name, {c.hidden_size, inter}, slice.begin, slice.count));
  return m;
}

absl::StatusOr<MoeWeights> LoadExperts(const model::ModelConfig& c, WeightLoader& w,
                                       const std::string& p, const char* gate, const char* up,
                                       const char* down) {
  const model::ParallelConfig& shard = w.shard();
  MoeWeights m;
  ASSIGN_OR_RETURN(m.router, w.Get(p + "gate.weight", {c.num_experts, c.hidden_size}));
  if (c.e_score_correction_bias) {
    ASSIGN_OR_RETURN(m.router_bias, w.GetF32(p + "gate.e_score_correction_bias", {c.num_experts}));
  }
  ASSIGN_OR_RETURN(model::IndexRange experts,
                   model::EvenSplit(c.num_experts, shard.ep, shard.EpRank(), "num_experts"));
  m.num_experts = c.num_experts;
  m.expert_begin = experts.begin;
  for (int64_t e = experts.begin; e < experts.begin + experts.count; ++e) {
    ASSIGN_OR_RETURN(GatedMlpWeights x, LoadGatedMlp(c, w, absl::StrCat(p, "experts.", e, "."),
                                                     c.moe_intermediate_size, gate, up, down));
    m.gate_up.push_back(std::move(x.gate_up));
    m.down.push_back(std::move(x.down));
  }
  return m;
}

kernels::MoeRoutingParams SoftmaxRouting(const model::ModelConfig& c) {
  kernels::MoeRoutingParams r;
  r.scoring = kernels::MoeScoring::kSoftmax;
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

absl::StatusOr<KvCacheSpec> GqaKvSpec(const model::ModelConfig& c,
                                      const model::ParallelConfig& shard) {
  ASSIGN_OR_RETURN(GqaHeadShard heads, ShardGqaHeads(c, shard));
  KvCacheSpec s;
  s.num_layers = c.num_hidden_layers;
  s.kv_heads = heads.kv.count;
  s.k_dim = s.v_dim = c.head_dim;
  return s;
}

absl::StatusOr<kernels::RopeScaling> RuntimeRopeScaling(const model::ModelConfig& c) {
  kernels::RopeScaling r;
  r.theta = c.rope_theta;
  const model::RopeScaling& s = c.rope_scaling;
  r.factor = s.factor;
  r.original_max_position_embeddings = s.original_max_position_embeddings;
  switch (s.type) {
    case model::RopeScalingType::kNone:
      r.type = kernels::RopeScalingType::kDefault;
      r.factor = 1.0;
      break;
    case model::RopeScalingType::kLinear:
      r.type = kernels::RopeScalingType::kLinear;
      break;
    case model::RopeScalingType::kYarn:
      r.type = kernels::RopeScalingType::kYarn;
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
      r.type = kernels::RopeScalingType::kLlama3;
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
