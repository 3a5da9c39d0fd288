// The building blocks every architecture is assembled from: attention (GQA or MLA), a gated
// MLP, and a routed MoE block with optional shared experts. Each block owns its weights and
// runs one layer's worth of ops on the Backend; the per-architecture files only choose and
// load blocks (see decoder_model.h for the layer loop).
//
// Trace names (layer = the decoder layer):
//   attention: "q", "k", "v" (after projection, norm and RoPE), "attn" (before o_proj),
//              "attn_out"; MLA also "q_absorbed", "kv_latent".
//   mlp:       "mlp_act" (silu(gate) * up), "mlp_out".
//   moe:       "router_logits" (f32), "topk_ids", "topk_weights", "moe_shared", "moe_out".
#ifndef EXPERTMESH_WORKER_MODELS_BLOCKS_H_
#define EXPERTMESH_WORKER_MODELS_BLOCKS_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/models/model.h"
#include "worker/models/shard.h"
#include "worker/models/workspace.h"

namespace expertmesh::models {

// What one forward step shares across layers.
struct StepContext {
  Backend* backend = nullptr;
  Workspace* workspace = nullptr;
  const ForwardBatch* batch = nullptr;
  const Tensor* rope_cos_sin = nullptr;  // [max_positions, rotary_dim] f32
  const TraceFn* trace = nullptr;
  // The group's collectives (see shard.h); nullptr or inactive in a group of one rank.
  Collectives* collectives = nullptr;
  DType compute_dtype = DType::kF32;
  int64_t num_tokens = 0;  // n

  bool sharded() const { return collectives != nullptr && collectives->active(); }
  // Sums the tensor-parallel partial outputs of a row-parallel projection (no-op unsharded).
  absl::Status AllReduceTp(Tensor& t) const {
    return sharded() ? collectives->AllReduceTp(t) : absl::OkStatus();
  }

  void Trace(std::string_view name, int layer, const Tensor& t) const {
    if (trace != nullptr && *trace) (*trace)(name, layer, t);
  }
  absl::StatusOr<Tensor> Scratch(std::string_view name, DType dtype,
                                 std::initializer_list<int64_t> shape) const {
    return workspace->Get(name, dtype, shape);
  }
};

class AttentionBlock {
 public:
  virtual ~AttentionBlock() = default;
  // x: [n, hidden] (normed), out: [n, hidden]; writes this step's k/v into the layer's cache.
  virtual absl::Status Forward(StepContext& ctx, int layer, const Tensor& x, Tensor& k_cache,
                               Tensor& v_cache, Tensor& out) = 0;
  virtual uint64_t weight_bytes() const = 0;
};

class FfnBlock {
 public:
  virtual ~FfnBlock() = default;
  // x: [n, hidden] (normed), out: [n, hidden].
  virtual absl::Status Forward(StepContext& ctx, int layer, const Tensor& x, Tensor& out) = 0;
  virtual uint64_t weight_bytes() const = 0;
  // Weight bytes one token reads (all of a dense MLP; top_k experts + shared for MoE).
  virtual uint64_t active_weight_bytes() const = 0;
};

// ---- Grouped-query attention (Llama, Mixtral, Qwen2-MoE, Qwen3-MoE).
struct GqaAttentionWeights {
  Tensor q, k, v, o;              // [heads*hd, hidden], [kvh*hd, hidden] x2, [hidden, heads*hd]
  Tensor q_bias, k_bias, v_bias;  // qkv_bias (Qwen2-MoE) or undefined
  Tensor o_bias;
  Tensor q_norm, k_norm;  // [hd] per-head RMSNorm (Qwen3) or undefined
};
struct GqaAttentionShape {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float norm_eps = 1e-6f;
  float scale = 1.0f;
  kernels::RopeParams rope;
};
std::unique_ptr<AttentionBlock> MakeGqaAttention(GqaAttentionWeights weights,
                                                 GqaAttentionShape shape);

// ---- Multi-head latent attention (DeepSeek-V2/V3), absorbed form over a latent cache.
struct MlaAttentionWeights {
  Tensor q_a, q_a_bias, q_a_norm, q_b;  // with q_lora_rank; else q_b is q_proj [h*qk, hidden]
  Tensor kv_a;                          // kv_a_proj_with_mqa [rank + rope, hidden]
  Tensor kv_a_bias;
  Tensor kv_a_norm;  // [rank]
  // Derived at load from kv_b_proj (one tensor per head):
  std::vector<Tensor> q_absorb;  // [rank + rope, nope + rope] = [[W_UK_h^T, 0], [0, I]]
  std::vector<Tensor> v_absorb;  // [v, rank + rope] = [W_UV_h, 0]
  Tensor latent_select;          // [rank + rope, rank]: [I; 0] (places c_kv in the latent row)
  Tensor rope_select;            // [rank + rope, rope]: [0; I] (places k_pe after it)
  Tensor ones;                   // [rank + rope] (weight of the RmsNorm used only to add)
  Tensor o;                      // [hidden, h*v]
  Tensor o_bias;
};
struct MlaAttentionShape {
  int64_t heads = 0, q_lora_rank = 0 /* 0 = none */, kv_lora_rank = 0;
  int64_t nope = 0, rope = 0, v = 0;
  float norm_eps = 1e-6f;
  float scale = 1.0f;  // qk_head_dim^-0.5 times DeepSeek's mscale^2
  kernels::RopeStyle rope_style = kernels::RopeStyle::kInterleaved;
};
absl::StatusOr<std::unique_ptr<AttentionBlock>> MakeMlaAttention(MlaAttentionWeights weights,
                                                                 MlaAttentionShape shape);

// ---- SiLU-gated MLP.
struct GatedMlpWeights {
  Tensor gate_up;  // [2*inter, hidden], gate rows first
  Tensor down;     // [hidden, inter]
};
std::unique_ptr<FfnBlock> MakeGatedMlp(GatedMlpWeights weights);
// The MLP's ops without the block wrapper (shared experts reuse it). `tag` prefixes scratch
// and trace names.
absl::Status RunGatedMlp(StepContext& ctx, int layer, std::string_view tag,
                         const GatedMlpWeights& w, const Tensor& x, Tensor& out);

// ---- Routed experts with optional shared experts.
struct MoeWeights {
  Tensor router;       // [experts, hidden] (all experts, on every rank)
  Tensor router_bias;  // [experts] f32 (e_score_correction_bias) or undefined
  // This rank's experts [expert_begin, expert_begin + gate_up.size()) of num_experts; each
  // expert's intermediate dimension is this rank's tp slice.
  int64_t num_experts = 0;
  int64_t expert_begin = 0;
  std::vector<Tensor> gate_up;  // per local expert [2*inter, hidden]
  std::vector<Tensor> down;     // per local expert [hidden, inter]
  bool has_shared = false;
  GatedMlpWeights shared;
  Tensor shared_gate;  // [1, hidden] (Qwen2-MoE) or undefined
};
std::unique_ptr<FfnBlock> MakeMoe(MoeWeights weights, kernels::MoeRoutingParams routing);

// Bytes of a weight as the forward pass reads it: its data plus any block scales, zero points
// and column order; 0 for an undefined tensor.
uint64_t TensorBytes(const Tensor& t);

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_BLOCKS_H_
