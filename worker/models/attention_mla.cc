// DeepSeek multi-head latent attention in the absorbed form, over a latent KV cache.
//
// HF computes, per head h:  k_h = [kv_b_k,h · c, k_pe],  v_h = kv_b_v,h · c,  with
// c = kv_a_layernorm(kv_a[:rank] x) and k_pe = rope(kv_a[rank:] x); scores q_h · k_h.
// Since q_nope,h · (W_UK,h c) = (W_UK,h^T q_nope,h) · c, we cache only the latent
// [c, k_pe] (kv_lora_rank + qk_rope_head_dim values per token, one "kv head", as model/plan
// counts it) and attend with the absorbed query [W_UK,h^T q_nope,h, q_pe,h]. The attention
// output (a mix of latents) goes through W_UV,h per head. The per-head products run as
// MoeGroupedLinear with one "expert" per head (rows grouped by MoePermute, ungrouped by
// MoeCombine with unit weights: exact data movement), so no new Backend op is needed. The
// latent row is assembled as [c, 0] + [0, k_pe] with two selection matmuls (exact: entries are
// 0 and 1) and the fused residual add of RmsNorm (exact: x + 0).
// Numerics: equal to HF's up to fp32 rounding order.
#include <algorithm>

#include "common/status_macros.h"
#include "worker/models/blocks.h"

namespace expertmesh::models {
namespace {

class MlaAttention final : public AttentionBlock {
 public:
  MlaAttention(MlaAttentionWeights w, MlaAttentionShape s) : w_(std::move(w)), s_(s) {}

  absl::Status Forward(StepContext& ctx, int layer, const Tensor& x, Tensor& k_cache,
                       Tensor& v_cache, Tensor& out) override {
    Backend& b = *ctx.backend;
    const int64_t n = x.dim(0), h = s_.heads, rank = s_.kv_lora_rank, rope = s_.rope;
    const int64_t qk = s_.nope + rope, lat = rank + rope;
    const DType cdt = ctx.compute_dtype;

    // Query.
    ASSIGN_OR_RETURN(Tensor q, ctx.Scratch("mla_q", cdt, {n, h * qk}));
    if (s_.q_lora_rank > 0) {
      ASSIGN_OR_RETURN(Tensor qa, ctx.Scratch("mla_qa", cdt, {n, s_.q_lora_rank}));
      RETURN_IF_ERROR(b.Linear(x, w_.q_a, w_.q_a_bias, qa));
      RETURN_IF_ERROR(b.RmsNorm(qa, nullptr, w_.q_a_norm, s_.norm_eps, qa));
      RETURN_IF_ERROR(b.Linear(qa, w_.q_b, Tensor(), q));
    } else {
      RETURN_IF_ERROR(b.Linear(x, w_.q_b, Tensor(), q));
    }
    ctx.Trace("q", layer, q);
    // Row t * h + head belongs to "expert" head; constants on the backend, made once.
    ASSIGN_OR_RETURN(Tensor head_ids, ctx.workspace->RowIds(n * h, h));
    ASSIGN_OR_RETURN(Tensor ones, ctx.workspace->Ones(n * h));
    ASSIGN_OR_RETURN(Tensor q_rows, q.Reshape({n * h, qk}));
    ASSIGN_OR_RETURN(Tensor q_lat, ctx.Scratch("mla_q_lat", cdt, {n * h, lat}));
    RETURN_IF_ERROR(PerHead(ctx, "mla_qabs", q_rows, head_ids, ones, w_.q_absorb, lat, q_lat));
    ASSIGN_OR_RETURN(Tensor q3, q_lat.Reshape({n, h, lat}));

    // Latent: [kv_a_layernorm(c), k_pe].
    ASSIGN_OR_RETURN(Tensor c, ctx.Scratch("mla_c", cdt, {n, rank}));
    ASSIGN_OR_RETURN(Tensor pe, ctx.Scratch("mla_pe", cdt, {n, rope}));
    RETURN_IF_ERROR(b.Linear(x, w_kv_c_, w_kv_c_bias_, c));
    RETURN_IF_ERROR(b.Linear(x, w_kv_pe_, w_kv_pe_bias_, pe));
    RETURN_IF_ERROR(b.RmsNorm(c, nullptr, w_.kv_a_norm, s_.norm_eps, c));
    ASSIGN_OR_RETURN(Tensor latent_c, ctx.Scratch("mla_latent_c", cdt, {n, lat}));
    ASSIGN_OR_RETURN(Tensor latent, ctx.Scratch("mla_latent", cdt, {n, lat}));
    ASSIGN_OR_RETURN(Tensor discard, ctx.Scratch("mla_discard", cdt, {n, lat}));
    RETURN_IF_ERROR(b.Linear(c, w_.latent_select, Tensor(), latent_c));
    RETURN_IF_ERROR(b.Linear(pe, w_.rope_select, Tensor(), latent));
    RETURN_IF_ERROR(b.RmsNorm(latent_c, &latent, w_.ones, 1.0f, discard));
    ASSIGN_OR_RETURN(Tensor latent3, latent.Reshape({n, 1, lat}));

    const kernels::RopeParams rp{s_.rope_style, static_cast<int>(rope), static_cast<int>(rank)};
    RETURN_IF_ERROR(b.Rope(*ctx.rope_cos_sin, ctx.batch->positions, rp, q3, latent3));
    ctx.Trace("q_absorbed", layer, q3);
    ctx.Trace("kv_latent", layer, latent3);
    RETURN_IF_ERROR(b.KvCacheWrite(latent3, latent3, ctx.batch->slot_mapping, k_cache, k_cache));
    ASSIGN_OR_RETURN(Tensor o_lat, ctx.Scratch("mla_o_lat", cdt, {n, h, lat}));
    RETURN_IF_ERROR(b.PagedAttention(q3, k_cache, k_cache, ctx.batch->attention, s_.scale, o_lat));

    ASSIGN_OR_RETURN(Tensor o_rows, o_lat.Reshape({n * h, lat}));
    ASSIGN_OR_RETURN(Tensor attn, ctx.Scratch("mla_attn", cdt, {n * h, s_.v}));
    RETURN_IF_ERROR(PerHead(ctx, "mla_vabs", o_rows, head_ids, ones, w_.v_absorb, s_.v, attn));
    ASSIGN_OR_RETURN(Tensor attn2, attn.Reshape({n, h * s_.v}));
    ctx.Trace("attn", layer, attn2);
    RETURN_IF_ERROR(b.Linear(attn2, w_.o, w_.o_bias, out));
    RETURN_IF_ERROR(ctx.AllReduceTp(out));
    ctx.Trace("attn_out", layer, out);
    (void)v_cache;  // the latent cache is k_cache (KvCacheSpec::v_is_k)
    return absl::OkStatus();
  }

  uint64_t weight_bytes() const override {
    uint64_t bytes = TensorBytes(w_.q_a) + TensorBytes(w_.q_a_bias) + TensorBytes(w_.q_a_norm) +
                     TensorBytes(w_.q_b) + TensorBytes(w_.kv_a) + TensorBytes(w_.kv_a_bias) +
                     TensorBytes(w_.kv_a_norm) + TensorBytes(w_.o) + TensorBytes(w_.o_bias);
    for (const Tensor& t : w_.q_absorb) bytes += TensorBytes(t);
    for (const Tensor& t : w_.v_absorb) bytes += TensorBytes(t);
    return bytes;
  }

  absl::Status Init() {
    const int64_t rank = s_.kv_lora_rank, rope = s_.rope;
    ASSIGN_OR_RETURN(w_kv_c_, w_.kv_a.Slice(0, rank));
    ASSIGN_OR_RETURN(w_kv_pe_, w_.kv_a.Slice(rank, rank + rope));
    if (w_.kv_a_bias.defined()) {
      ASSIGN_OR_RETURN(w_kv_c_bias_, w_.kv_a_bias.Slice(0, rank));
      ASSIGN_OR_RETURN(w_kv_pe_bias_, w_.kv_a_bias.Slice(rank, rank + rope));
    }
    return absl::OkStatus();
  }

 private:
  // out[r] = x[r] @ weights[head(r)]^T for rows r = t * h + head.
  absl::Status PerHead(StepContext& ctx, const std::string& tag, const Tensor& x,
                       const Tensor& head_ids, const Tensor& ones,
                       const std::vector<Tensor>& weights, int64_t out_dim, Tensor& out) {
    Backend& b = *ctx.backend;
    const int64_t rows = x.dim(0), h = s_.heads;
    ASSIGN_OR_RETURN(Tensor xp, ctx.Scratch(tag + "_x", ctx.compute_dtype, {rows, x.dim(1)}));
    ASSIGN_OR_RETURN(Tensor offsets, ctx.Scratch(tag + "_offsets", DType::kI32, {h + 1}));
    ASSIGN_OR_RETURN(Tensor slots, ctx.Scratch(tag + "_slots", DType::kI32, {rows}));
    RETURN_IF_ERROR(b.MoePermute(x, head_ids, static_cast<int>(h), xp, offsets, slots));
    ASSIGN_OR_RETURN(Tensor y, ctx.Scratch(tag + "_y", ctx.compute_dtype, {rows, out_dim}));
    RETURN_IF_ERROR(b.MoeGroupedLinear(xp, offsets, weights, y));
    return b.MoeCombine(y, slots, head_ids, ones, Tensor(), Tensor(), out);
  }

  MlaAttentionWeights w_;
  MlaAttentionShape s_;
  Tensor w_kv_c_, w_kv_pe_, w_kv_c_bias_, w_kv_pe_bias_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AttentionBlock>> MakeMlaAttention(MlaAttentionWeights weights,
                                                                 MlaAttentionShape shape) {
  auto block = std::make_unique<MlaAttention>(std::move(weights), shape);
  RETURN_IF_ERROR(block->Init());
  return std::unique_ptr<AttentionBlock>(std::move(block));
}

}  // namespace expertmesh::models
