// Grouped-query attention over the paged cache (HF LlamaAttention and its Qwen/Mixtral kin):
// q/k/v projections (+bias), optional per-head q/k RMSNorm (Qwen3), RoPE, cache write,
// paged attention, o_proj.
#include "common/status_macros.h"
#include "worker/models/blocks.h"

namespace expertmesh::models {
namespace {

class GqaAttention final : public AttentionBlock {
 public:
  GqaAttention(GqaAttentionWeights w, GqaAttentionShape s) : w_(std::move(w)), s_(s) {}

  absl::Status Forward(StepContext& ctx, int layer, const Tensor& x, Tensor& k_cache,
                       Tensor& v_cache, Tensor& out) override {
    Backend& b = *ctx.backend;
    const int64_t n = x.dim(0);
    const int64_t hd = s_.head_dim;
    const DType cdt = ctx.compute_dtype;
    ASSIGN_OR_RETURN(Tensor q, ctx.Scratch("attn_q", cdt, {n, s_.heads * hd}));
    ASSIGN_OR_RETURN(Tensor k, ctx.Scratch("attn_k", cdt, {n, s_.kv_heads * hd}));
    ASSIGN_OR_RETURN(Tensor v, ctx.Scratch("attn_v", cdt, {n, s_.kv_heads * hd}));
    RETURN_IF_ERROR(b.Linear(x, w_.q, w_.q_bias, q));
    RETURN_IF_ERROR(b.Linear(x, w_.k, w_.k_bias, k));
    RETURN_IF_ERROR(b.Linear(x, w_.v, w_.v_bias, v));
    if (w_.q_norm.defined()) {
      ASSIGN_OR_RETURN(Tensor qr, q.Reshape({n * s_.heads, hd}));
      ASSIGN_OR_RETURN(Tensor kr, k.Reshape({n * s_.kv_heads, hd}));
      RETURN_IF_ERROR(b.RmsNorm(qr, nullptr, w_.q_norm, s_.norm_eps, qr));
      RETURN_IF_ERROR(b.RmsNorm(kr, nullptr, w_.k_norm, s_.norm_eps, kr));
    }
    ASSIGN_OR_RETURN(Tensor q3, q.Reshape({n, s_.heads, hd}));
    ASSIGN_OR_RETURN(Tensor k3, k.Reshape({n, s_.kv_heads, hd}));
    ASSIGN_OR_RETURN(Tensor v3, v.Reshape({n, s_.kv_heads, hd}));
    RETURN_IF_ERROR(b.Rope(*ctx.rope_cos_sin, ctx.batch->positions, s_.rope, q3, k3));
    ctx.Trace("q", layer, q3);
    ctx.Trace("k", layer, k3);
    ctx.Trace("v", layer, v3);
    RETURN_IF_ERROR(b.KvCacheWrite(k3, v3, ctx.batch->slot_mapping, k_cache, v_cache));
    ASSIGN_OR_RETURN(Tensor attn, ctx.Scratch("attn_o", cdt, {n, s_.heads, hd}));
    RETURN_IF_ERROR(b.PagedAttention(q3, k_cache, v_cache, ctx.batch->attention, s_.scale, attn));
    ctx.Trace("attn", layer, attn);
    ASSIGN_OR_RETURN(Tensor attn2, attn.Reshape({n, s_.heads * hd}));
    RETURN_IF_ERROR(b.Linear(attn2, w_.o, w_.o_bias, out));
    RETURN_IF_ERROR(ctx.AllReduceTp(out));
    ctx.Trace("attn_out", layer, out);
    return absl::OkStatus();
  }

  uint64_t weight_bytes() const override {
    return TensorBytes(w_.q) + TensorBytes(w_.k) + TensorBytes(w_.v) + TensorBytes(w_.o) +
           TensorBytes(w_.q_bias) + TensorBytes(w_.k_bias) + TensorBytes(w_.v_bias) +
           TensorBytes(w_.o_bias) + TensorBytes(w_.q_norm) + TensorBytes(w_.k_norm);
  }

 private:
  GqaAttentionWeights w_;
  GqaAttentionShape s_;
};

}  // namespace

std::unique_ptr<AttentionBlock> MakeGqaAttention(GqaAttentionWeights weights,
                                                 GqaAttentionShape shape) {
  return std::make_unique<GqaAttention>(std::move(weights), shape);
}

}  // namespace expertmesh::models
