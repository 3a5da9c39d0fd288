// DecoderModel: the layer loop every supported architecture shares (HF *ForCausalLM):
//   h = embed(ids); residual = h
//   per layer: x = input_norm(residual (+= previous block output));  out = attn(x)
//              x = post_attention_norm(residual += out);              out = ffn(x)
//   final_norm(residual += out) -> gather logit rows -> lm_head (f32 logits)
// The residual adds are fused into RmsNorm. Architectures differ only in the blocks they
// build, which the per-family files (llama.cc, mixtral.cc, qwen2_moe.cc, qwen3_moe.cc,
// deepseek.cc) do through the builders declared here.
//
// Trace names: "embed" (layer -1), "residual" (per layer, after the attention add),
// "final_norm" (-1), "logits_hidden" (-1, gathered rows), "logits" (-1), plus the blocks'.
#ifndef EXPERTMESH_WORKER_MODELS_DECODER_MODEL_H_
#define EXPERTMESH_WORKER_MODELS_DECODER_MODEL_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/rope_cache.h"
#include "model/config/model_config.h"
#include "worker/models/blocks.h"
#include "worker/models/model.h"
#include "worker/models/weight_loader.h"

namespace expertmesh::models {

struct DecoderLayer {
  Tensor input_norm;  // [hidden]
  Tensor post_norm;   // [hidden]
  std::unique_ptr<AttentionBlock> attn;
  std::unique_ptr<FfnBlock> ffn;
};

// What an architecture file builds from the checkpoint.
struct DecoderParts {
  std::vector<DecoderLayer> layers;
  KvCacheSpec kv;      // dtype is set by the model (the compute dtype)
  int rotary_dim = 0;  // width of the RoPE table
};

// One builder per architecture family (each defined in its own file).
absl::StatusOr<DecoderParts> BuildLlamaLayers(const model::ModelConfig& c, WeightLoader& w);
absl::StatusOr<DecoderParts> BuildMixtralLayers(const model::ModelConfig& c, WeightLoader& w);
absl::StatusOr<DecoderParts> BuildQwen2MoeLayers(const model::ModelConfig& c, WeightLoader& w);
absl::StatusOr<DecoderParts> BuildQwen3MoeLayers(const model::ModelConfig& c, WeightLoader& w);
absl::StatusOr<DecoderParts> BuildDeepseekLayers(const model::ModelConfig& c, WeightLoader& w);

// ---- Helpers shared by the builders (arch_common.cc).
std::string LayerPrefix(int layer);  // "model.layers.<layer>."
// q/k/v/o (+ biases, + q/k norms) of GQA attention under `prefix` ("model.layers.3.self_attn.")
absl::StatusOr<std::unique_ptr<AttentionBlock>> LoadGqaAttention(const model::ModelConfig& c,
                                                                 WeightLoader& w,
                                                                 const std::string& prefix);
// gate/up (fused) and down of a SiLU-gated MLP of width `inter` (this rank's tp slice of it),
// under `prefix` + names.
absl::StatusOr<GatedMlpWeights> LoadGatedMlp(const model::ModelConfig& c, WeightLoader& w,
                                             const std::string& prefix, int64_t inter,
                                             const char* gate = "gate_proj",
                                             const char* up = "up_proj",
                                             const char* down = "down_proj");
// Routed experts `prefix`experts.<e>.{gate,up,down} of width moe_intermediate_size and the
// router `prefix`gate.weight (+ e_score_correction_bias when the config has it).
absl::StatusOr<MoeWeights> LoadExperts(const model::ModelConfig& c, WeightLoader& w,
                                       const std::string& prefix, const char* gate = "gate_proj",
                                       const char* up = "up_proj", const char* down = "down_proj");
// Softmax top-k routing per config (no groups).
kernels::MoeRoutingParams SoftmaxRouting(const model::ModelConfig& c);
// The layer's two norms.
absl::Status LoadLayerNorms(const model::ModelConfig& c, WeightLoader& w, int layer,
                            DecoderLayer& out);
// The KV spec of GQA attention on this rank (its share of the kv heads).
absl::StatusOr<KvCacheSpec> GqaKvSpec(const model::ModelConfig& c,
                                      const model::ParallelConfig& shard);
// This rank's query heads and kv heads of GQA attention (see shard.h). InvalidArgument when
// the heads do not split over tp.
struct GqaHeadShard {
  model::IndexRange q, kv;
};
absl::StatusOr<GqaHeadShard> ShardGqaHeads(const model::ModelConfig& c,
                                           const model::ParallelConfig& shard);
// model::RopeScaling -> the runtime's. Unimplemented for dynamic NTK scaling.
absl::StatusOr<kernels::RopeScaling> RuntimeRopeScaling(const model::ModelConfig& c);

// Builds the model from parts. Exposed for the loader only.
absl::StatusOr<std::unique_ptr<Model>> MakeDecoderModel(const model::ModelConfig& config,
                                                        WeightLoader& weights, DecoderParts parts,
                                                        Backend* backend,
                                                        const ModelOptions& options);

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_DECODER_MODEL_H_
