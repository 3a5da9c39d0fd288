// Mixtral (HF MixtralForCausalLM): Llama attention; every layer a sparse MoE block
// (block_sparse_moe: router `gate`, experts w1 = gate, w3 = up, w2 = down) with softmax top-k
// routing whose weights are renormalised to sum to 1.
#include "common/status_macros.h"
#include "worker/models/decoder_model.h"

namespace expertmesh::models {

absl::StatusOr<DecoderParts> BuildMixtralLayers(const model::ModelConfig& c, WeightLoader& w) {
  DecoderParts parts;
  kernels::MoeRoutingParams routing = SoftmaxRouting(c);
  routing.norm_topk_prob = true;  // MixtralSparseMoeBlock always renormalises
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    DecoderLayer layer;
    RETURN_IF_ERROR(LoadLayerNorms(c, w, l, layer));
    ASSIGN_OR_RETURN(layer.attn, LoadGqaAttention(c, w, LayerPrefix(l) + "self_attn."));
    ASSIGN_OR_RETURN(MoeWeights moe,
                     LoadExperts(c, w, LayerPrefix(l) + "block_sparse_moe.", "w1", "w3", "w2"));
    layer.ffn = MakeMoe(std::move(moe), routing);
    parts.layers.push_back(std::move(layer));
  }
  ASSIGN_OR_RETURN(parts.kv, GqaKvSpec(c, w.shard()));
  parts.rotary_dim = static_cast<int>(c.head_dim);
  return parts;
}

}  // namespace expertmesh::models
