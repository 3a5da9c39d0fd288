// Argument validation shared by every backend: shapes, dtypes and devices. Data-dependent
// checks (ids, slots and block ids in range) need the data and live in each backend.
#include "kernels/backend.h"

#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"

namespace expertmesh::kernels {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

bool IsCompute(DType d) { return d == DType::kF32 || d == DType::kBF16; }
bool IsWeight(DType d) { return d == DType::kF32 || d == DType::kBF16; }

class Checker {
 public:
  Checker(Op op, Device device) : op_(op), device_(device) {}
  Op op() const { return op_; }

  // Checks definedness, device and rank, and (if given) each dim (-1 = any).
  absl::Status Shape(const std::string& name, const Tensor& t,
                     std::initializer_list<int64_t> dims) {
    if (!t.defined()) return Error(name, "is undefined");
    if (t.device() != device_) {
      return Error(name, StrCat(t.DebugString(), " is on ", std::string(DeviceName(t.device())),
                                ", expected ", std::string(DeviceName(device_))));
    }
    if (t.rank() != static_cast<int>(dims.size())) {
      return Error(name,
                   StrCat(t.DebugString(), " has rank ", t.rank(), ", expected ", dims.size()));
    }
    int i = 0;
    for (int64_t d : dims) {
      if (d >= 0 && t.dim(i) != d) {
        return Error(name, StrCat(t.DebugString(), " dim ", i, " is ", t.dim(i), ", expected ", d));
      }
      ++i;
    }
    return absl::OkStatus();
  }
  absl::Status Dtype(const std::string& name, const Tensor& t, bool ok,
                     const std::string& allowed) {
    if (!ok)
      return Error(name, StrCat(t.DebugString(), " has dtype ", std::string(DTypeName(t.dtype())),
                                ", expected ", allowed));
    return absl::OkStatus();
  }
  absl::Status Error(const std::string& name, const std::string& what) {
    return InvalidArgumentError(StrCat(std::string(OpName(op_)), ": ", name, " ", what));
  }

 private:
  Op op_;
  Device device_;
};

#define EM_CHECK(expr)                        \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)

// A Linear / MoeGroupedLinear weight: bf16 or f32, or fp8 / q4 with its block scales where the
// backend multiplies such weights (Backend::SupportsFp8Weights, SupportsQ4Weights).
absl::Status CheckLinearWeight(Checker& c, const std::string& name, const Tensor& weight,
                               const Backend& backend) {
  const DType dtype = weight.dtype();
  if (dtype != DType::kF8E4M3 && dtype != DType::kQ4) {
    return c.Dtype(name, weight, IsWeight(dtype), "bf16, f32, fp8 e4m3 or q4");
  }
  const bool fp8 = dtype == DType::kF8E4M3;
  if (fp8 ? !backend.SupportsFp8Weights() : !backend.SupportsQ4Weights()) {
    return absl::UnimplementedError(
        StrCat(std::string(OpName(c.op())), ": ", name, " ", weight.DebugString(), ": backend ",
               std::string(backend.Name()), " does not multiply ", fp8 ? "fp8" : "q4", " weights"));
  }
  if (weight.block_scales() == nullptr) {
    return c.Error(name, StrCat(weight.DebugString(), " has no block scales"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kEmbedding:
      return "embedding";
    case Op::kRmsNorm:
      return "rms_norm";
    case Op::kRope:
      return "rope";
    case Op::kLinear:
      return "linear";
    case Op::kSiluMul:
      return "silu_mul";
    case Op::kMoeTopK:
      return "moe_topk";
    case Op::kMoePermute:
      return "moe_permute";
    case Op::kMoeGroupedLinear:
      return "moe_grouped_linear";
    case Op::kMoeCombine:
      return "moe_combine";
    case Op::kKvCacheWrite:
      return "kv_cache_write";
    case Op::kPagedAttention:
      return "paged_attention";
    case Op::kSampleTokens:
      return "sample_tokens";
    case Op::kMaskLogits:
      return "mask_logits";
  }
  return "unknown_op";
}

absl::Status Backend::Embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  Checker c(Op::kEmbedding, device());
  EM_CHECK(c.Shape("table", table, {-1, -1}));
  EM_CHECK(c.Dtype("table", table, IsWeight(table.dtype()) || table.dtype() == DType::kF16,
                   "bf16, f16 or f32"));
  EM_CHECK(c.Shape("ids", ids, {-1}));
  EM_CHECK(c.Dtype("ids", ids, ids.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("out", out, {ids.dim(0), table.dim(1)}));
  EM_CHECK(c.Dtype("out", out, IsCompute(out.dtype()), "f32 or bf16"));
  return DoEmbedding(table, ids, out);
}

absl::Status Backend::RmsNorm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps,
                              Tensor& out) {
  Checker c(Op::kRmsNorm, device());
  EM_CHECK(c.Shape("x", x, {-1, -1}));
  EM_CHECK(c.Dtype("x", x, IsCompute(x.dtype()), "f32 or bf16"));
  EM_CHECK(c.Shape("weight", weight, {x.dim(1)}));
  EM_CHECK(c.Dtype("weight", weight, IsWeight(weight.dtype()), "bf16 or f32"));
  EM_CHECK(c.Shape("out", out, {x.dim(0), x.dim(1)}));
  EM_CHECK(c.Dtype("out", out, out.dtype() == x.dtype(), "the dtype of x"));
  if (residual != nullptr) {
    EM_CHECK(c.Shape("residual", *residual, {x.dim(0), x.dim(1)}));
    EM_CHECK(c.Dtype("residual", *residual, IsCompute(residual->dtype()), "f32 or bf16"));
    if (residual->raw_data() == out.raw_data() && out.numel() > 0) {
      return c.Error("out", "must not alias residual");
    }
  }
  if (!(eps > 0.0f)) return c.Error("eps", StrCat("must be positive, got ", eps));
  return DoRmsNorm(x, residual, weight, eps, out);
}

absl::Status Backend::Rope(const Tensor& cos_sin, const Tensor& positions, const RopeParams& params,
                           Tensor& q, Tensor& k) {
  Checker c(Op::kRope, device());
  EM_CHECK(c.Shape("cos_sin", cos_sin, {-1, params.rotary_dim}));
  EM_CHECK(c.Dtype("cos_sin", cos_sin, cos_sin.dtype() == DType::kF32, "f32"));
  EM_CHECK(c.Shape("positions", positions, {-1}));
  EM_CHECK(c.Dtype("positions", positions, positions.dtype() == DType::kI32, "i32"));
  if (params.rotary_dim <= 0 || params.rotary_dim % 2 != 0 || params.rotary_offset < 0) {
    return c.Error("params", StrCat("rotary_dim ", params.rotary_dim, " must be positive and even",
                                    ", rotary_offset ", params.rotary_offset, " non-negative"));
  }
  const int64_t n = positions.dim(0);
  for (Tensor* t : {&q, &k}) {
    const char* name = t == &q ? "q" : "k";
    if (t == &k && !k.defined()) continue;
    EM_CHECK(c.Shape(name, *t, {n, -1, -1}));
    EM_CHECK(c.Dtype(name, *t, IsCompute(t->dtype()), "f32 or bf16"));
    if (params.rotary_offset + params.rotary_dim > t->dim(2)) {
      return c.Error(name, StrCat("head dim ", t->dim(2), " is smaller than rotary_offset + ",
                                  "rotary_dim = ", params.rotary_offset + params.rotary_dim));
    }
  }
  return DoRope(cos_sin, positions, params, q, k);
}

absl::Status Backend::Linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                             Tensor& out) {
  Checker c(Op::kLinear, device());
  EM_CHECK(c.Shape("x", x, {-1, -1}));
  EM_CHECK(c.Dtype("x", x, IsCompute(x.dtype()), "f32 or bf16"));
  EM_CHECK(c.Shape("weight", weight, {-1, x.dim(1)}));
  EM_CHECK(CheckLinearWeight(c, "weight", weight, *this));
  if (bias.defined()) {
    EM_CHECK(c.Shape("bias", bias, {weight.dim(0)}));
    EM_CHECK(c.Dtype("bias", bias, IsWeight(bias.dtype()), "bf16 or f32"));
  }
  EM_CHECK(c.Shape("out", out, {x.dim(0), weight.dim(0)}));
  EM_CHECK(c.Dtype("out", out, IsCompute(out.dtype()), "f32 or bf16"));
  return DoLinear(x, weight, bias, out);
}

absl::Status Backend::SiluMul(const Tensor& gate_up, Tensor& out) {
  Checker c(Op::kSiluMul, device());
  EM_CHECK(c.Shape("gate_up", gate_up, {-1, -1}));
  EM_CHECK(c.Dtype("gate_up", gate_up, IsCompute(gate_up.dtype()), "f32 or bf16"));
  if (gate_up.dim(1) % 2 != 0) return c.Error("gate_up", "last dim must be even (gate | up)");
  EM_CHECK(c.Shape("out", out, {gate_up.dim(0), gate_up.dim(1) / 2}));
  EM_CHECK(c.Dtype("out", out, out.dtype() == gate_up.dtype(), "the dtype of gate_up"));
  return DoSiluMul(gate_up, out);
}

absl::Status Backend::MoeTopK(const Tensor& logits, const Tensor& bias, const MoeRoutingParams& p,
                              Tensor& topk_ids, Tensor& topk_weights) {
  Checker c(Op::kMoeTopK, device());
  EM_CHECK(c.Shape("logits", logits, {-1, -1}));
  EM_CHECK(c.Dtype("logits", logits, logits.dtype() == DType::kF32, "f32"));
  const int64_t n = logits.dim(0), experts = logits.dim(1);
  if (p.top_k < 1 || p.top_k > experts) {
    return c.Error("params", StrCat("top_k ", p.top_k, " must be in [1, ", experts, "]"));
  }
  if (p.num_groups < 1 || experts % p.num_groups != 0 || p.topk_groups < 1 ||
      p.topk_groups > p.num_groups) {
    return c.Error("params",
                   StrCat("num_groups ", p.num_groups, " must divide ", experts,
                          " experts and topk_groups ", p.topk_groups, " be in [1, num_groups]"));
  }
  const int64_t per_group = experts / p.num_groups;
  if (p.top_k > p.topk_groups * per_group) {
    return c.Error("params", StrCat("top_k ", p.top_k, " exceeds the ", p.topk_groups * per_group,
                                    " experts of the kept groups"));
  }
  if (p.num_groups > 1 && p.group_score == MoeGroupScore::kTop2Sum && per_group < 2) {
    return c.Error("params", "top-2-sum group scores need at least 2 experts per group");
  }
  if (bias.defined()) {
    if (p.scoring != MoeScoring::kSigmoid) {
      return c.Error("bias", "e_score_correction_bias is only used with sigmoid scoring");
    }
    EM_CHECK(c.Shape("bias", bias, {experts}));
    EM_CHECK(c.Dtype("bias", bias, bias.dtype() == DType::kF32, "f32"));
  }
  EM_CHECK(c.Shape("topk_ids", topk_ids, {n, p.top_k}));
  EM_CHECK(c.Dtype("topk_ids", topk_ids, topk_ids.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("topk_weights", topk_weights, {n, p.top_k}));
  EM_CHECK(c.Dtype("topk_weights", topk_weights, topk_weights.dtype() == DType::kF32, "f32"));
  return DoMoeTopK(logits, bias, p, topk_ids, topk_weights);
}

absl::Status Backend::MoePermute(const Tensor& x, const Tensor& topk_ids, int num_experts,
                                 Tensor& out_x, Tensor& expert_offsets, Tensor& sorted_slots) {
  Checker c(Op::kMoePermute, device());
  EM_CHECK(c.Shape("x", x, {-1, -1}));
  EM_CHECK(c.Dtype("x", x, IsCompute(x.dtype()), "f32 or bf16"));
  EM_CHECK(c.Shape("topk_ids", topk_ids, {x.dim(0), -1}));
  EM_CHECK(c.Dtype("topk_ids", topk_ids, topk_ids.dtype() == DType::kI32, "i32"));
  if (num_experts < 1) return c.Error("num_experts", StrCat("must be positive, got ", num_experts));
  const int64_t m = x.dim(0) * topk_ids.dim(1);
  EM_CHECK(c.Shape("out_x", out_x, {m, x.dim(1)}));
  EM_CHECK(c.Dtype("out_x", out_x, out_x.dtype() == x.dtype(), "the dtype of x"));
  EM_CHECK(c.Shape("expert_offsets", expert_offsets, {num_experts + 1}));
  EM_CHECK(c.Dtype("expert_offsets", expert_offsets, expert_offsets.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("sorted_slots", sorted_slots, {m}));
  EM_CHECK(c.Dtype("sorted_slots", sorted_slots, sorted_slots.dtype() == DType::kI32, "i32"));
  return DoMoePermute(x, topk_ids, num_experts, out_x, expert_offsets, sorted_slots);
}

absl::Status Backend::MoeGroupedLinear(const Tensor& x, const Tensor& expert_offsets,
                                       std::span<const Tensor> weights, Tensor& out) {
  Checker c(Op::kMoeGroupedLinear, device());
  EM_CHECK(c.Shape("x", x, {-1, -1}));
  EM_CHECK(c.Dtype("x", x, IsCompute(x.dtype()), "f32 or bf16"));
  const int64_t experts = static_cast<int64_t>(weights.size());
  if (experts == 0) return c.Error("weights", "is empty");
  EM_CHECK(c.Shape("expert_offsets", expert_offsets, {experts + 1}));
  EM_CHECK(c.Dtype("expert_offsets", expert_offsets, expert_offsets.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("out", out, {x.dim(0), -1}));
  EM_CHECK(c.Dtype("out", out, IsCompute(out.dtype()), "f32 or bf16"));
  for (int64_t e = 0; e < experts; ++e) {
    if (!weights[e].defined()) continue;
    std::string name = StrCat("weights[", e, "]");
    EM_CHECK(c.Shape(name, weights[e], {out.dim(1), x.dim(1)}));
    EM_CHECK(CheckLinearWeight(c, name, weights[e], *this));
  }
  return DoMoeGroupedLinear(x, expert_offsets, weights, out);
}

absl::Status Backend::MoeCombine(const Tensor& y, const Tensor& sorted_slots,
                                 const Tensor& topk_ids, const Tensor& topk_weights,
                                 const Tensor& shared, const Tensor& shared_gate, Tensor& out) {
  Checker c(Op::kMoeCombine, device());
  EM_CHECK(c.Shape("topk_ids", topk_ids, {-1, -1}));
  EM_CHECK(c.Dtype("topk_ids", topk_ids, topk_ids.dtype() == DType::kI32, "i32"));
  const int64_t n = topk_ids.dim(0), k = topk_ids.dim(1);
  EM_CHECK(c.Shape("topk_weights", topk_weights, {n, k}));
  EM_CHECK(c.Dtype("topk_weights", topk_weights, topk_weights.dtype() == DType::kF32, "f32"));
  EM_CHECK(c.Shape("y", y, {n * k, -1}));
  EM_CHECK(c.Dtype("y", y, IsCompute(y.dtype()), "f32 or bf16"));
  EM_CHECK(c.Shape("sorted_slots", sorted_slots, {n * k}));
  EM_CHECK(c.Dtype("sorted_slots", sorted_slots, sorted_slots.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("out", out, {n, y.dim(1)}));
  EM_CHECK(c.Dtype("out", out, IsCompute(out.dtype()), "f32 or bf16"));
  if (shared.defined()) {
    EM_CHECK(c.Shape("shared", shared, {n, y.dim(1)}));
    EM_CHECK(c.Dtype("shared", shared, IsCompute(shared.dtype()), "f32 or bf16"));
  }
  if (shared_gate.defined()) {
    if (!shared.defined()) return c.Error("shared_gate", "given without shared");
    if (shared_gate.numel() != n || shared_gate.dim(0) != n) {
      return c.Error("shared_gate",
                     StrCat(shared_gate.DebugString(), " must be [", n, "] or [", n, ", 1]"));
    }
    EM_CHECK(c.Dtype("shared_gate", shared_gate, IsCompute(shared_gate.dtype()), "f32 or bf16"));
  }
  return DoMoeCombine(y, sorted_slots, topk_ids, topk_weights, shared, shared_gate, out);
}

absl::Status Backend::KvCacheWrite(const Tensor& k, const Tensor& v, const Tensor& slot_mapping,
                                   Tensor& k_cache, Tensor& v_cache) {
  Checker c(Op::kKvCacheWrite, device());
  EM_CHECK(c.Shape("k", k, {-1, -1, -1}));
  EM_CHECK(c.Dtype("k", k, IsCompute(k.dtype()), "f32 or bf16"));
  EM_CHECK(c.Shape("v", v, {k.dim(0), k.dim(1), -1}));
  EM_CHECK(c.Dtype("v", v, v.dtype() == k.dtype(), "the dtype of k"));
  EM_CHECK(c.Shape("slot_mapping", slot_mapping, {k.dim(0)}));
  EM_CHECK(c.Dtype("slot_mapping", slot_mapping, slot_mapping.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("k_cache", k_cache, {-1, -1, k.dim(1), k.dim(2)}));
  EM_CHECK(c.Shape("v_cache", v_cache, {k_cache.dim(0), k_cache.dim(1), k.dim(1), v.dim(2)}));
  for (const Tensor* t : {&k_cache, &v_cache}) {
    const bool ok = t->dtype() == k.dtype() || t->dtype() == DType::kBF16;
    EM_CHECK(c.Dtype(t == &k_cache ? "k_cache" : "v_cache", *t, ok, "the dtype of k, or bf16"));
  }
  if (v_cache.dtype() != k_cache.dtype()) return c.Error("v_cache", "dtype differs from k_cache");
  return DoKvCacheWrite(k, v, slot_mapping, k_cache, v_cache);
}

absl::Status Backend::PagedAttention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                     const PagedAttentionBatch& batch, float scale, Tensor& out) {
  Checker c(Op::kPagedAttention, device());
  EM_CHECK(c.Shape("q", q, {-1, -1, -1}));
  EM_CHECK(c.Dtype("q", q, IsCompute(q.dtype()), "f32 or bf16"));
  EM_CHECK(c.Shape("k_cache", k_cache, {-1, -1, -1, q.dim(2)}));
  EM_CHECK(c.Shape("v_cache", v_cache, {k_cache.dim(0), k_cache.dim(1), k_cache.dim(2), -1}));
  const bool cache_ok = k_cache.dtype() == q.dtype() || k_cache.dtype() == DType::kBF16;
  EM_CHECK(c.Dtype("k_cache", k_cache, cache_ok, "the dtype of q, or bf16"));
  EM_CHECK(c.Dtype("v_cache", v_cache, v_cache.dtype() == k_cache.dtype(), "k_cache's dtype"));
  const int64_t kv_heads = k_cache.dim(2);
  if (kv_heads < 1 || q.dim(1) % kv_heads != 0) {
    return c.Error("q", StrCat("heads ", q.dim(1), " must be a multiple of kv heads ", kv_heads));
  }
  if (k_cache.dim(1) < 1) return c.Error("k_cache", "block size must be positive");
  EM_CHECK(c.Shape("batch.seq_lens", batch.seq_lens, {-1}));
  const int64_t seqs = batch.seq_lens.dim(0);
  EM_CHECK(c.Dtype("batch.seq_lens", batch.seq_lens, batch.seq_lens.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("batch.query_start", batch.query_start, {seqs + 1}));
  EM_CHECK(c.Dtype("batch.query_start", batch.query_start, batch.query_start.dtype() == DType::kI32,
                   "i32"));
  EM_CHECK(c.Shape("batch.block_tables", batch.block_tables, {seqs, -1}));
  EM_CHECK(c.Dtype("batch.block_tables", batch.block_tables,
                   batch.block_tables.dtype() == DType::kI32, "i32"));
  EM_CHECK(c.Shape("out", out, {q.dim(0), q.dim(1), v_cache.dim(3)}));
  EM_CHECK(c.Dtype("out", out, out.dtype() == q.dtype(), "the dtype of q"));
  if (!(scale > 0.0f)) return c.Error("scale", StrCat("must be positive, got ", scale));
  return DoPagedAttention(q, k_cache, v_cache, batch, scale, out);
}

absl::Status Backend::SampleTokens(const Tensor& logits, std::span<const SamplingRow> params,
                                   Tensor& tokens) {
  Checker c(Op::kSampleTokens, device());
  EM_CHECK(c.Shape("logits", logits, {-1, -1}));
  EM_CHECK(c.Dtype("logits", logits, logits.dtype() == DType::kF32, "f32"));
  if (logits.dim(1) < 1) return c.Error("logits", "has an empty vocabulary");
  if (static_cast<int64_t>(params.size()) != logits.dim(0)) {
    return c.Error("params", StrCat("has ", params.size(), " rows, logits ", logits.dim(0)));
  }
  EM_CHECK(c.Shape("tokens", tokens, {logits.dim(0)}));
  EM_CHECK(c.Dtype("tokens", tokens, tokens.dtype() == DType::kI32, "i32"));
  for (size_t r = 0; r < params.size(); ++r) {
    const SamplingRow& p = params[r];
    const bool ok = p.temperature >= 0 && p.top_p > 0 && p.top_p <= 1 && p.min_p >= 0 &&
                    p.min_p <= 1;  // NaNs fail every comparison
    if (!ok) {
      return c.Error("params", StrCat("row ", r, ": temperature ", p.temperature, ", top_p ",
                                      p.top_p, ", min_p ", p.min_p, " out of range"));
    }
  }
  if (logits.dim(0) == 0) return absl::OkStatus();
  return DoSampleTokens(logits, params, tokens);
}

absl::Status Backend::MaskLogits(const Tensor& masks, std::span<const int32_t> rows,
                                 Tensor& logits) {
  Checker c(Op::kMaskLogits, device());
  EM_CHECK(c.Shape("logits", logits, {-1, -1}));
  EM_CHECK(c.Dtype("logits", logits, logits.dtype() == DType::kF32, "f32"));
  const int64_t words = (logits.dim(1) + 31) / 32;
  EM_CHECK(c.Shape("masks", masks, {static_cast<int64_t>(rows.size()), words}));
  EM_CHECK(c.Dtype("masks", masks, masks.dtype() == DType::kI32, "i32"));
  // Distinct rows: a device kernel may then write every listed row in parallel.
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= logits.dim(0)) {
      return c.Error("rows", StrCat("[", i, "] = ", rows[i], " is outside the ", logits.dim(0),
                                    " logits rows"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (rows[j] == rows[i]) return c.Error("rows", StrCat("lists row ", rows[i], " twice"));
    }
  }
  if (rows.empty() || logits.dim(1) == 0) return absl::OkStatus();
  return DoMaskLogits(masks, rows, logits);
}

}  // namespace expertmesh::kernels
