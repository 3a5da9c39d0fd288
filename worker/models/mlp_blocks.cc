// Gated MLP and MoE blocks (see blocks.h).
#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/models/blocks.h"

namespace expertmesh::models {

uint64_t TensorBytes(const Tensor& t) {
  if (!t.defined()) return 0;
  uint64_t bytes = t.nbytes();
  // Quantized weights are read with their scales (and int4 zero points, column order).
  if (const kernels::BlockScales* s = t.block_scales(); s != nullptr) {
    for (const Tensor* part : {s->scales.get(), s->zero_points.get(), s->column_order.get()}) {
      if (part != nullptr) bytes += part->nbytes();
    }
  }
  return bytes;
}

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
    RETURN_IF_ERROR(RunGatedMlp(ctx, layer, "mlp", w_, x, out));
    return ctx.AllReduceTp(out);  // the down projection is row-parallel
  }
  uint64_t weight_bytes() const override { return MlpBytes(w_); }
  uint64_t active_weight_bytes() const override { return MlpBytes(w_); }

 private:
  GatedMlpWeights w_;
};

// HF order: router logits -> top-k -> experts over their tokens -> weighted sum (+ shared).
class Moe final : public FfnBlock {
 public:
  Moe(MoeWeights w, kernels::MoeRoutingParams routing) : w_(std::move(w)), routing_(routing) {}

  absl::Status Forward(StepContext& ctx, int layer, const Tensor& x, Tensor& out) override {
    if (ctx.sharded() && ctx.collectives->spec().ep > 1) {
      return ForwardExpertParallel(ctx, x, out);
    }
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
    RETURN_IF_ERROR(RunShared(ctx, layer, x, shared, shared_gate));
    RETURN_IF_ERROR(b.MoeCombine(y, slots, ids, weights, shared, shared_gate, out));
    // Tensor-parallel experts (ep 1): each rank holds a slice of every expert's intermediate
    // dimension, so `out` is a partial sum (linear in the shared expert too).
    RETURN_IF_ERROR(ctx.AllReduceTp(out));
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
  // The shared expert (and its gate) over the rows of x; undefined tensors when there is none.
  absl::Status RunShared(StepContext& ctx, int layer, const Tensor& x, Tensor& shared,
                         Tensor& shared_gate) {
    if (!w_.has_shared) return absl::OkStatus();
    const int64_t rows = x.dim(0), hidden = x.dim(1);
    ASSIGN_OR_RETURN(shared, ctx.Scratch("moe_shared", ctx.compute_dtype, {rows, hidden}));
    RETURN_IF_ERROR(RunGatedMlp(ctx, layer, "shared", w_.shared, x, shared));
    if (w_.shared_gate.defined()) {
      ASSIGN_OR_RETURN(shared_gate, ctx.Scratch("moe_shared_gate", ctx.compute_dtype, {rows, 1}));
      RETURN_IF_ERROR(ctx.backend->Linear(x, w_.shared_gate, Tensor(), shared_gate));
    }
    return absl::OkStatus();
  }

  // Expert parallelism (see shard.h). Every rank holds the step's hidden states x; ep rank d
  // takes the token share [n*d/ep, n*(d+1)/ep), routes it, and exchanges (token, choice) rows
  // with the ranks of its tp index that own the chosen experts:
  //   1. all-to-all of per-expert row counts, 2. all-to-all of the rows (grouped by expert,
  //   so each destination's rows are contiguous), 3. the owner runs its experts on what it
  //   received, 4. all-to-all of the outputs back, 5. the share is combined exactly as on one
  //   rank (MoeCombine over the same permutation), 6. one world all-reduce assembles every
  //   share and the tp partial sums.
  absl::Status ForwardExpertParallel(StepContext& ctx, const Tensor& x, Tensor& out) {
    Backend& b = *ctx.backend;
    Collectives& coll = *ctx.collectives;
    const model::ParallelConfig& sh = coll.spec();
    const int ep = sh.ep, tp = sh.tp, world = sh.WorldSize();
    const int64_t n = x.dim(0), hidden = x.dim(1);
    const int64_t experts = w_.num_experts;
    const int64_t local = static_cast<int64_t>(w_.gate_up.size());
    const int64_t k = routing_.top_k;
    const int64_t inter = w_.down[0].dim(1);
    const DType cdt = ctx.compute_dtype;
    const int64_t lo = n * sh.EpRank() / ep, hi = n * (sh.EpRank() + 1) / ep, share = hi - lo;
    auto peer = [&](int d) { return d * tp + sh.TpRank(); };

    RETURN_IF_ERROR(b.Zero(out));
    // 1. Route the share and group its rows by expert.
    Tensor ids, weights, slots;
    ASSIGN_OR_RETURN(Tensor xp, ctx.Scratch("moe_x", cdt, {share * k, hidden}));
    std::vector<int32_t> counts_send(ep * local, 0);
    std::vector<int64_t> rows_send(ep, 0);
    if (share > 0) {
      ASSIGN_OR_RETURN(Tensor xs, x.Slice(lo, hi));
      ASSIGN_OR_RETURN(Tensor logits, ctx.Scratch("moe_logits", DType::kF32, {share, experts}));
      RETURN_IF_ERROR(b.Linear(xs, w_.router, Tensor(), logits));
      ASSIGN_OR_RETURN(ids, ctx.Scratch("moe_ids", DType::kI32, {share, k}));
      ASSIGN_OR_RETURN(weights, ctx.Scratch("moe_weights", DType::kF32, {share, k}));
      RETURN_IF_ERROR(b.MoeTopK(logits, w_.router_bias, routing_, ids, weights));
      ASSIGN_OR_RETURN(Tensor offsets, ctx.Scratch("moe_offsets", DType::kI32, {experts + 1}));
      ASSIGN_OR_RETURN(slots, ctx.Scratch("moe_slots", DType::kI32, {share * k}));
      RETURN_IF_ERROR(b.MoePermute(xs, ids, static_cast<int>(experts), xp, offsets, slots));
      offsets_host_.resize(static_cast<size_t>(experts + 1));
      RETURN_IF_ERROR(b.CopyToHost(offsets, offsets_host_.data()));
      const int32_t* off = offsets_host_.data();
      for (int d = 0; d < ep; ++d) {
        for (int64_t e = 0; e < local; ++e) {
          counts_send[d * local + e] = off[d * local + e + 1] - off[d * local + e];
          rows_send[d] += counts_send[d * local + e];
        }
      }
    }
    // 2. Per-expert counts, then the rows themselves (to the peers of this tp index only).
    std::vector<int64_t> sc(world, 0), rc(world, 0);
    for (int d = 0; d < ep; ++d) sc[peer(d)] = rc[peer(d)] = local;
    std::vector<int32_t> counts_recv(ep * local, 0);
    RETURN_IF_ERROR(coll.AllToAllHost(std::as_bytes(std::span(counts_send)), sc,
                                      std::as_writable_bytes(std::span(counts_recv)), rc,
                                      DType::kI32));
    std::vector<int64_t> rows_recv(ep, 0);
    int64_t received = 0;
    for (int d = 0; d < ep; ++d) {
      for (int64_t e = 0; e < local; ++e) rows_recv[d] += counts_recv[d * local + e];
      received += rows_recv[d];
    }
    for (int d = 0; d < ep; ++d) {
      sc[peer(d)] = rows_send[d] * hidden;
      rc[peer(d)] = rows_recv[d] * hidden;
    }
    ASSIGN_OR_RETURN(Tensor xr,
                     ctx.Scratch("moe_ep_x", cdt, {std::max<int64_t>(received, 1), hidden}));
    ASSIGN_OR_RETURN(Tensor xr_rows, xr.Slice(0, received));
    RETURN_IF_ERROR(coll.AllToAllWorld(xp, sc, xr_rows, rc, cdt));

    // 3. This rank's experts over the rows it received (grouped again by local expert).
    ASSIGN_OR_RETURN(Tensor yr,
                     ctx.Scratch("moe_ep_y", cdt, {std::max<int64_t>(received, 1), hidden}));
    if (received > 0) {
      ASSIGN_OR_RETURN(Tensor xrv, xr.Slice(0, received));
      ASSIGN_OR_RETURN(Tensor yrv, yr.Slice(0, received));
      // The local expert of each received row, from the counts (host), to the backend.
      rid_host_.resize(static_cast<size_t>(received));
      int64_t r = 0;
      for (int d = 0; d < ep; ++d) {
        for (int64_t e = 0; e < local; ++e) {
          for (int32_t i = 0; i < counts_recv[d * local + e]; ++i, ++r) {
            rid_host_[r] = static_cast<int32_t>(e);
          }
        }
      }
      ASSIGN_OR_RETURN(Tensor rid, ctx.Scratch("moe_ep_ids", DType::kI32, {received, 1}));
      RETURN_IF_ERROR(b.CopyFromHost(rid_host_.data(), rid));
      ASSIGN_OR_RETURN(Tensor ones, ctx.workspace->Ones(received));
      ASSIGN_OR_RETURN(Tensor xg, ctx.Scratch("moe_ep_xg", cdt, {received, hidden}));
      ASSIGN_OR_RETURN(Tensor goff, ctx.Scratch("moe_ep_offsets", DType::kI32, {local + 1}));
      ASSIGN_OR_RETURN(Tensor gslots, ctx.Scratch("moe_ep_slots", DType::kI32, {received}));
      RETURN_IF_ERROR(b.MoePermute(xrv, rid, static_cast<int>(local), xg, goff, gslots));
      ASSIGN_OR_RETURN(Tensor gate_up, ctx.Scratch("moe_gate_up", cdt, {received, 2 * inter}));
      RETURN_IF_ERROR(b.MoeGroupedLinear(xg, goff, w_.gate_up, gate_up));
      ASSIGN_OR_RETURN(Tensor act, ctx.Scratch("moe_act", cdt, {received, inter}));
      RETURN_IF_ERROR(b.SiluMul(gate_up, act));
      ASSIGN_OR_RETURN(Tensor yg, ctx.Scratch("moe_y", cdt, {received, hidden}));
      RETURN_IF_ERROR(b.MoeGroupedLinear(act, goff, w_.down, yg));
      // Back to the order received (unit weights, one choice per row: exact data movement).
      RETURN_IF_ERROR(b.MoeCombine(yg, gslots, rid, ones, Tensor(), Tensor(), yrv));
    }
    // 4. The outputs go back to the ranks that sent the rows, in the order they were sent.
    for (int d = 0; d < ep; ++d) std::swap(sc[peer(d)], rc[peer(d)]);
    ASSIGN_OR_RETURN(Tensor yback,
                     ctx.Scratch("moe_ep_back", cdt, {std::max<int64_t>(share * k, 1), hidden}));
    ASSIGN_OR_RETURN(Tensor yr_rows, yr.Slice(0, received));
    ASSIGN_OR_RETURN(Tensor yback_rows, yback.Slice(0, share * k));
    RETURN_IF_ERROR(coll.AllToAllWorld(yr_rows, sc, yback_rows, rc, cdt));
    // 5. Combine the share as a single rank would (plus this tp slice of the shared expert).
    if (share > 0) {
      ASSIGN_OR_RETURN(Tensor xs, x.Slice(lo, hi));
      ASSIGN_OR_RETURN(Tensor y, yback.Slice(0, share * k));
      Tensor shared, shared_gate;
      RETURN_IF_ERROR(RunShared(ctx, -1, xs, shared, shared_gate));
      ASSIGN_OR_RETURN(Tensor out_share, out.Slice(lo, hi));
      RETURN_IF_ERROR(b.MoeCombine(y, slots, ids, weights, shared, shared_gate, out_share));
    }
    // 6. Every share, every tp partial sum.
    return coll.AllReduceWorld(out);
  }

  MoeWeights w_;
  kernels::MoeRoutingParams routing_;
  // Host copies reused from step to step (expert parallelism).
  std::vector<int32_t> offsets_host_, rid_host_;
};

}  // namespace

std::unique_ptr<FfnBlock> MakeGatedMlp(GatedMlpWeights weights) {
  return std::make_unique<GatedMlp>(std::move(weights));
}

std::unique_ptr<FfnBlock> MakeMoe(MoeWeights weights, kernels::MoeRoutingParams routing) {
  return std::make_unique<Moe>(std::move(weights), routing);
}

}  // namespace expertmesh::models
