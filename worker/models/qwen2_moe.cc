// Qwen2-MoE (HF Qwen2MoeForCausalLM): attention with q/k/v bias; MoE on the layers
// ModelConfig::IsMoeLayer picks (decoder_sparse_step, mlp_only_layers), a dense MLP of
// intermediate_size elsewhere. The MoE block adds one shared expert scaled by
// sigmoid(shared_expert_gate(x)); softmax routing, renormalised only with norm_topk_prob.
#include "common/status_macros.h"
#include "worker/models/decoder_model.h"

namespace expertmesh::models {

absl::StatusOr<DecoderParts> BuildQwen2MoeLayers(const model::ModelConfig& c, WeightLoader& w) {
  DecoderParts parts;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    DecoderLayer layer;
    const std::string p = LayerPrefix(l);
    RETURN_IF_ERROR(LoadLayerNorms(c, w, l, layer));
    ASSIGN_OR_RETURN(layer.attn, LoadGqaAttention(c, w, p + "self_attn."));
    if (c.IsMoeLayer(l)) {
      ASSIGN_OR_RETURN(MoeWeights moe, LoadExperts(c, w, p + "mlp."));
      if (c.shared_expert_intermediate_size > 0) {
        moe.has_shared = true;
        ASSIGN_OR_RETURN(moe.shared, LoadGatedMlp(c, w, p + "mlp.shared_expert.",
                                                  c.shared_expert_intermediate_size));
        if (c.shared_expert_gate) {
          ASSIGN_OR_RETURN(moe.shared_gate,
                           w.Get(p + "mlp.shared_expert_gate.weight", {1, c.hidden_size}));
        }
      }
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
