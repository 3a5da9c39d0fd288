// Qwen3-MoE (HF Qwen3MoeForCausalLM): attention with per-head RMSNorm on q and k (before RoPE,
// no bias); MoE on IsMoeLayer layers (dense MLP elsewhere); softmax routing, renormalised with
// norm_topk_prob; no shared expert.
#include "common/status_macros.h"
#include "worker/models/decoder_model.h"

namespace expertmesh::models {

absl::StatusOr<DecoderParts> BuildQwen3MoeLayers(const model::ModelConfig& c, WeightLoader& w) {
  DecoderParts parts;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    DecoderLayer layer;
    const std::string p = LayerPrefix(l);
    RETURN_IF_ERROR(LoadLayerNorms(c, w, l, layer));
    ASSIGN_OR_RETURN(layer.attn, LoadGqaAttention(c, w, p + "self_attn."));
    if (c.IsMoeLayer(l)) {
      ASSIGN_OR_RETURN(MoeWeights moe, LoadExperts(c, w, p + "mlp."));
      layer.ffn = MakeMoe(std::move(moe), SoftmaxRouting(c));
    } else {
      ASSIGN_OR_RETURN(GatedMlpWeights mlp, LoadGatedMlp(c, w, p + "mlp.", c.intermediate_size));
      layer.ffn = MakeGatedMlp(std::move(mlp));
    }
    parts.layers.push_back(std::move(layer));
  }
  ASSIGN_OR_RETURN(parts.kv, GqaKvSpec(c, w.shard()));
  parts.rotary_dim = static_cast<int>(c.head_dim);
  return parts;
}

}  // namespace expertmesh::models
