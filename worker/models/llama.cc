// Llama (HF LlamaForCausalLM): GQA attention with rotate-half RoPE, SiLU-gated MLP, optional
// tied embeddings (handled by the decoder model).
#include "common/status_macros.h"
#include "worker/models/decoder_model.h"

namespace expertmesh::models {

absl::StatusOr<DecoderParts> BuildLlamaLayers(const model::ModelConfig& c, WeightLoader& w) {
  DecoderParts parts;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    DecoderLayer layer;
    RETURN_IF_ERROR(LoadLayerNorms(c, w, l, layer));
    ASSIGN_OR_RETURN(layer.attn, LoadGqaAttention(c, w, LayerPrefix(l) + "self_attn."));
    ASSIGN_OR_RETURN(GatedMlpWeights mlp,
                     LoadGatedMlp(c, w, LayerPrefix(l) + "mlp.", c.intermediate_size));
    layer.ffn = MakeGatedMlp(std::move(mlp));
    parts.layers.push_back(std::move(layer));
  }
  ASSIGN_OR_RETURN(parts.kv, GqaKvSpec(c, w.shard()));
  parts.rotary_dim = static_cast<int>(c.head_dim);
  return parts;
}

}  // namespace expertmesh::models
