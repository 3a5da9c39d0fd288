// Gated MLP and MoE blocks (see blocks.h).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/models/blocks.h"

namespace expertmesh::models {

uint64_t TensorBytes(const Tensor& t) { return t.defined() ? t.nbytes() : 0; }

absl::Status RunGatedMlp(StepContext& ctx, int layer, std::string_view tag,
                         const GatedMlpWeights& w, const Tensor& x, Tensor& out) {
  const int64_t n = x.dim(0);
  const int64_t inter = w.down.dim(1);
  ASSIGN_OR_RETURN(Tensor gate_up, ctx.Scratch(absl::StrCat(std::string(tag), "_gate_up"),
                                               ctx.compute_dtype, {n, 2 * inter}));
  RETURN_IF_ERROR(ctx.backend->Linear(x, w.gate_up, Tensor(), gate_up));
  ASSIGN_OR_RETURN(Tensor act, ctx.Scratch(absl::StrCat(std::string(tag), "_act"),
                                           ctx.compute_dtype, {n, inter}));
  RETURN_IF_ERROR(ctx.backend->SiluMul(gate_up, act));
  ctx.Trace(absl::StrCat(std::string(tag), "_act"), layer, act);
  RETURN_IF_ERROR(ctx.backend->Linear(act, w.down, Tensor(), out));
  ctx.Trace(absl::StrCat(std::string(tag), "_out"), layer, out);
  return absl::OkStatus();
}

namespace {

uint64_t MlpBytes(const GatedMlpWeights& w) { return TensorBytes(w.gate_up) + TensorBytes(w.down); }

class GatedMlp final : public FfnBlock {
 public:
  explicit GatedMlp(GatedMlpWeights w) : w_(std::move(w)) {}
  absl::Status Forward(StepContext& ctx, int layer, const Tensor& x, Tensor& out) override {
    return RunGatedMlp(ctx, layer, "mlp", w_, x, out);
  }
  uint64_t weight_bytes() const override { return MlpBytes(w_); }
  uint64_t active_weight_bytes() const override { return MlpBytes(w_); }

 private:
  GatedMlpWeights w_;
};

// HF order: router logits -> top-k -> experts over their tokens -> weighted sum (+ shared).
class Moe final : public FfnBlock {
 public:
  Moe(MoeWeights w, runtime::MoeRoutingParams routing) : w_(std::move(w)), routing_(routing) {}

  absl::Status Forward(StepContext& ctx, int layer, const Tensor& x, Tensor& out) override {
    Backend& b = *ctx.backend;
    const int64_t n = x.dim(0);
    const int64_t hidden = x.dim(1);
    const int64_t experts = w_.router.dim(0);
    const int64_t k = routing_.top_k;
    const int64_t inter = w_.down[0].dim(1);
    const DType cdt = ctx.compute_dtype;

    ASSIGN_OR_RETURN(Tensor logits, ctx.Scratch("moe_logits", DType::kF32, {n, experts}));
    RETURN_IF_ERROR(b.Linear(x, w_.router, Tensor(), logits));
    ctx.Trace("router_logits", layer, logits);
    ASSIGN_OR_RETURN(Tensor ids, ctx.Scratch("moe_ids", DType::kI32, {n, k}));
    ASSIGN_OR_RETURN(Tensor weights, ctx.Scratch("moe_weights", DType::kF32, {n, k}));
    RETURN_IF_ERROR(b.MoeTopK(logits, w_.router_bias, routing_, ids, weights));
    ctx.Trace("topk_ids", layer, ids);
    ctx.Trace("topk_weights", layer, weights);

    ASSIGN_OR_RETURN(Tensor xp, ctx.Scratch("moe_x", cdt, {n * k, hidden}));
    ASSIGN_OR_RETURN(Tensor offsets, ctx.Scratch("moe_offsets", DType::kI32, {experts + 1}));
    ASSIGN_OR_RETURN(Tensor slots, ctx.Scratch("moe_slots", DType::kI32, {n * k}));
    RETURN_IF_ERROR(b.MoePermute(x, ids, static_cast<int>(experts), xp, offsets, slots));
    ASSIGN_OR_RETURN(Tensor gate_up, ctx.Scratch("moe_gate_up", cdt, {n * k, 2 * inter}));
    RETURN_IF_ERROR(b.MoeGroupedLinear(xp, offsets, w_.gate_up, gate_up));
    ASSIGN_OR_RETURN(Tensor act, ctx.Scratch("moe_act", cdt, {n * k, inter}));
    RETURN_IF_ERROR(b.SiluMul(gate_up, act));
    ASSIGN_OR_RETURN(Tensor y, ctx.Scratch("moe_y", cdt, {n * k, hidden}));
    RETURN_IF_ERROR(b.MoeGroupedLinear(act, offsets, w_.down, y));

    Tensor shared, shared_gate;
    if (w_.has_shared) {
      ASSIGN_OR_RETURN(shared, ctx.Scratch("moe_shared", cdt, {n, hidden}));
      RETURN_IF_ERROR(RunGatedMlp(ctx, layer, "shared", w_.shared, x, shared));
      if (w_.shared_gate.defined()) {
        ASSIGN_OR_RETURN(shared_gate, ctx.Scratch("moe_shared_gate", cdt, {n, 1}));
        RETURN_IF_ERROR(b.Linear(x, w_.shared_gate, Tensor(), shared_gate));
      }
    }
    RETURN_IF_ERROR(b.MoeCombine(y, slots, ids, weights, shared, shared_gate, out));
    ctx.Trace("moe_out", layer, out);
    return absl::OkStatus();
  }

  uint64_t weight_bytes() const override {
    uint64_t bytes = TensorBytes(w_.router) + TensorBytes(w_.router_bias) +
                     TensorBytes(w_.shared_gate) + (w_.has_shared ? MlpBytes(w_.shared) : 0);
    for (size_t e = 0; e < w_.gate_up.size(); ++e) {
      bytes += TensorBytes(w_.gate_up[e]) + TensorBytes(w_.down[e]);
    }
    return bytes;
  }
  uint64_t active_weight_bytes() const override {
    const uint64_t expert = TensorBytes(w_.gate_up[0]) + TensorBytes(w_.down[0]);
    return TensorBytes(w_.router) + TensorBytes(w_.shared_gate) +
           (w_.has_shared ? MlpBytes(w_.shared) : 0) + routing_.top_k * expert;
  }

 private:
  MoeWeights w_;
  runtime::MoeRoutingParams routing_;
};

}  // namespace

std::unique_ptr<FfnBlock> MakeGatedMlp(GatedMlpWeights weights) {
  return std::make_unique<GatedMlp>(std::move(weights));
}

std::unique_ptr<FfnBlock> MakeMoe(MoeWeights weights, runtime::MoeRoutingParams routing) {
  return std::make_unique<Moe>(std::move(weights), routing);
}

}  // namespace expertmesh::models
