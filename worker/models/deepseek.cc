// DeepSeek-V2 and V3 (HF DeepseekV2ForCausalLM / DeepseekV3ForCausalLM).
//  - Attention: MLA (attention_mla.cc), q through q_a_proj -> q_a_layernorm -> q_b_proj when
//    q_lora_rank is set, else q_proj. The q_a/kv_a layernorms use HF's default eps (1e-6).
//    RoPE on the qk_rope_head_dim slice: V2 rotates interleaved pairs (HF apply_rotary_emb over
//    complex pairs); V3 de-interleaves first (apply_rotary_pos_emb_interleave). Softmax scale
//    qk_head_dim^-0.5, times yarn mscale(factor, mscale_all_dim)^2 for V3 (V2's HF code does
//    not apply it).
//  - FFN: dense MLP for layers < first_k_dense_replace, then MoE with n_shared_experts fused
//    into one shared MLP (added unscaled).
//  - Routing: V2 softmax, greedy or group-limited (group score = best expert), weights times
//    routed_scaling_factor, never renormalised (HF DeepseekV2Moe). V3 sigmoid + bias
//    (noaux_tc, group score = sum of the best two), renormalised with norm_topk_prob, then
//    times routed_scaling_factor (HF DeepseekV3TopkRouter).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/models/decoder_model.h"

namespace expertmesh::models {
namespace {

constexpr float kLatentNormEps = 1e-6f;

absl::StatusOr<std::unique_ptr<AttentionBlock>> LoadMla(const model::ModelConfig& c,
                                                        WeightLoader& w, const std::string& p,
                                                        float scale, kernels::RopeStyle style) {
  const int64_t h = c.num_attention_heads, hidden = c.hidden_size, rank = c.kv_lora_rank;
  const int64_t nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, v = c.v_head_dim;
  const int64_t qk = nope + rope, lat = rank + rope;
  // Heads split over tp (q_b's rows, o's columns, kv_b's per-head blocks); the latent path
  // (q_a, kv_a and their norms) is per token and replicated.
  const model::ParallelConfig& shard = w.shard();
  ASSIGN_OR_RETURN(model::IndexRange heads,
                   model::EvenSplit(h, shard.tp, shard.TpRank(), "num_attention_heads"));
  MlaAttentionWeights a;
  MlaAttentionShape s;
  if (c.q_lora_rank.has_value()) {
    const int64_t qr = *c.q_lora_rank;
    s.q_lora_rank = qr;
    ASSIGN_OR_RETURN(a.q_a, w.Get(p + "q_a_proj.weight", {qr, hidden}));
    if (c.qkv_bias) {
      ASSIGN_OR_RETURN(a.q_a_bias, w.Get(p + "q_a_proj.bias", {qr}));
    }
    ASSIGN_OR_RETURN(a.q_a_norm, w.Get(p + "q_a_layernorm.weight", {qr}));
    ASSIGN_OR_RETURN(
        a.q_b, w.GetRows(p + "q_b_proj.weight", {h * qk, qr}, heads.begin * qk, heads.count * qk));
  } else {
    ASSIGN_OR_RETURN(a.q_b, w.GetRows(p + "q_proj.weight", {h * qk, hidden}, heads.begin * qk,
                                      heads.count * qk));
  }
  ASSIGN_OR_RETURN(a.kv_a, w.Get(p + "kv_a_proj_with_mqa.weight", {lat, hidden}));
  if (c.qkv_bias) {
    ASSIGN_OR_RETURN(a.kv_a_bias, w.Get(p + "kv_a_proj_with_mqa.bias", {lat}));
  }
  ASSIGN_OR_RETURN(a.kv_a_norm, w.Get(p + "kv_a_layernorm.weight", {rank}));
  ASSIGN_OR_RETURN(
      a.o, w.GetCols(p + "o_proj.weight", {hidden, h * v}, heads.begin * v, heads.count * v));
  if (c.o_proj_bias && shard.TpRank() == 0) {
    ASSIGN_OR_RETURN(a.o_bias, w.Get(p + "o_proj.bias", {hidden}));
  }

  // Absorbed per-head projections from kv_b_proj [h * (nope + v), rank].
  ASSIGN_OR_RETURN(std::vector<float> kv_b,
                   w.GetFloats(p + "kv_b_proj.weight", {h * (nope + v), rank}));
  for (int64_t hd = heads.begin; hd < heads.begin + heads.count; ++hd) {
    const float* wk = kv_b.data() + hd * (nope + v) * rank;  // [nope, rank]
    const float* wv = wk + nope * rank;                      // [v, rank]
    std::vector<float> qa(static_cast<size_t>(lat * qk), 0.0f);
    for (int64_t r = 0; r < rank; ++r) {
      for (int64_t j = 0; j < nope; ++j) qa[r * qk + j] = wk[j * rank + r];
    }
    for (int64_t i = 0; i < rope; ++i) qa[(rank + i) * qk + nope + i] = 1.0f;
    std::vector<float> va(static_cast<size_t>(v * lat), 0.0f);
    for (int64_t i = 0; i < v; ++i) {
      for (int64_t r = 0; r < rank; ++r) va[i * lat + r] = wv[i * rank + r];
    }
    ASSIGN_OR_RETURN(Tensor tq, w.FromFloats(qa, {lat, qk}));
    ASSIGN_OR_RETURN(Tensor tv, w.FromFloats(va, {v, lat}));
    a.q_absorb.push_back(std::move(tq));
    a.v_absorb.push_back(std::move(tv));
  }
  std::vector<float> sel(static_cast<size_t>(lat * rank), 0.0f);
  for (int64_t r = 0; r < rank; ++r) sel[r * rank + r] = 1.0f;
  ASSIGN_OR_RETURN(a.latent_select, w.FromFloats(sel, {lat, rank}));
  std::vector<float> rsel(static_cast<size_t>(lat * rope), 0.0f);
  for (int64_t i = 0; i < rope; ++i) rsel[(rank + i) * rope + i] = 1.0f;
  ASSIGN_OR_RETURN(a.rope_select, w.FromFloats(rsel, {lat, rope}));
  ASSIGN_OR_RETURN(a.ones, w.FromFloats(std::vector<float>(lat, 1.0f), {lat}));

  s.heads = heads.count;
  s.kv_lora_rank = rank;
  s.nope = nope;
  s.rope = rope;
  s.v = v;
  s.norm_eps = kLatentNormEps;
  s.scale = scale;
  s.rope_style = style;
  return MakeMlaAttention(std::move(a), s);
}

}  // namespace

absl::StatusOr<DecoderParts> BuildDeepseekLayers(const model::ModelConfig& c, WeightLoader& w) {
  const bool v3 = c.architecture == model::Architecture::kDeepseekV3;
  if (!c.UsesMla()) {
    return absl::UnimplementedError(
        absl::StrCat(w.dir(), ": DeepSeek without MLA (kv_lora_rank 0) is not implemented"));
  }
  ASSIGN_OR_RETURN(kernels::RopeScaling scaling, RuntimeRopeScaling(c));
  double scale = 1.0 / std::sqrt(static_cast<double>(c.qk_nope_head_dim + c.qk_rope_head_dim));
  if (v3) scale *= kernels::DeepseekSoftmaxScaleMultiplier(scaling);
  const kernels::RopeStyle style =
      v3 ? kernels::RopeStyle::kDeinterleaveNeox : kernels::RopeStyle::kInterleaved;

  kernels::MoeRoutingParams routing;
  routing.top_k = static_cast<int>(c.num_experts_per_tok);
  routing.routed_scaling_factor = static_cast<float>(c.routed_scaling_factor);
  if (v3) {
    routing.scoring = kernels::MoeScoring::kSigmoid;
    routing.group_score = kernels::MoeGroupScore::kTop2Sum;
    routing.num_groups = static_cast<int>(c.n_group);
    routing.topk_groups = static_cast<int>(c.topk_group);
    routing.norm_topk_prob = c.norm_topk_prob;
  } else {
    routing.scoring = kernels::MoeScoring::kSoftmax;
    routing.group_score = kernels::MoeGroupScore::kMax;
    const bool grouped = c.topk_method == model::TopkMethod::kGroupLimitedGreedy;
    routing.num_groups = grouped ? static_cast<int>(c.n_group) : 1;
    routing.topk_groups = grouped ? static_cast<int>(c.topk_group) : 1;
    routing.norm_topk_prob = false;
  }

  DecoderParts parts;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    DecoderLayer layer;
    const std::string p = LayerPrefix(l);
    RETURN_IF_ERROR(LoadLayerNorms(c, w, l, layer));
    ASSIGN_OR_RETURN(layer.attn, LoadMla(c, w, p + "self_attn.", static_cast<float>(scale), style));
    if (c.IsMoeLayer(l)) {
      ASSIGN_OR_RETURN(MoeWeights moe, LoadExperts(c, w, p + "mlp."));
      if (c.shared_expert_intermediate_size > 0) {
        moe.has_shared = true;
        ASSIGN_OR_RETURN(moe.shared, LoadGatedMlp(c, w, p + "mlp.shared_experts.",
                                                  c.shared_expert_intermediate_size));
      }
      layer.ffn = MakeMoe(std::move(moe), routing);
    } else {
      ASSIGN_OR_RETURN(GatedMlpWeights mlp, LoadGatedMlp(c, w, p + "mlp.", c.intermediate_size));
      layer.ffn = MakeGatedMlp(std::move(mlp));
    }
    parts.layers.push_back(std::move(layer));
  }
  parts.kv.num_layers = c.num_hidden_layers;
  parts.kv.kv_heads = 1;
  parts.kv.k_dim = parts.kv.v_dim = c.kv_lora_rank + c.qk_rope_head_dim;
  parts.kv.v_is_k = true;
  parts.rotary_dim = static_cast<int>(c.qk_rope_head_dim);
  return parts;
}

}  // namespace expertmesh::models
