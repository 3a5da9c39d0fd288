// CudaBackend's ops: validated tensors to launcher arguments (raw pointers, dtypes, sizes).
// kernels::Backend has checked shapes, dtypes and devices; what is left here is the mapping, and
// turning a launcher's "not implemented" (cudaErrorInvalidValue) into Unimplemented.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
#include "kernels/cuda/gemm/cublaslt_linear.h"
#include "kernels/cuda/gemm/moe_grouped_gemm.h"
#include "kernels/cuda/ops/embedding.h"
#include "kernels/cuda/ops/kv_cache_write.h"
#include "kernels/cuda/ops/mask_logits.h"
#include "kernels/cuda/ops/moe_combine.h"
#include "kernels/cuda/ops/moe_permute.h"
#include "kernels/cuda/ops/moe_topk.h"
#include "kernels/cuda/ops/rms_norm.h"
#include "kernels/cuda/ops/rope.h"
#include "kernels/cuda/ops/sampling.h"
#include "kernels/cuda/ops/silu_mul.h"

namespace expertmesh::cuda {

using kernels::Op;
using kernels::Tensor;

bool CudaBackend::Supports(Op op) const {
  switch (op) {
    case Op::kEmbedding:
    case Op::kRmsNorm:
    case Op::kRope:
    case Op::kLinear:
    case Op::kSiluMul:
    case Op::kMoeTopK:
    case Op::kMoePermute:
    case Op::kMoeGroupedLinear:
    case Op::kMoeCombine:
    case Op::kKvCacheWrite:
    case Op::kPagedAttention:
    case Op::kSampleTokens:
    case Op::kMaskLogits:
      return true;
  }
  return false;
}

absl::Status CudaBackend::LaunchStatus(Op op, cudaError_t error) const {
  if (error == cudaSuccess) return absl::OkStatus();
  (void)cudaGetLastError();  // a launch-configuration error is sticky until read
  if (error == cudaErrorInvalidValue) {
    return absl::UnimplementedError(
        absl::StrCat(std::string(OpName(op)),
                     ": the cuda backend does not implement this dtype/shape combination"));
  }
  return CudaStatus(error, OpName(op));
}

absl::StatusOr<void*> CudaBackend::Workspace(Op op, size_t bytes) const {
  if (bytes == 0) return nullptr;
  if (bytes > workspace_.bytes()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        std::string(OpName(op)), ": needs ", bytes, " bytes of workspace, the cuda backend has ",
        workspace_.bytes(), " (raise CudaBackendOptions::workspace_bytes)"));
  }
  return workspace_.get();
}

absl::StatusOr<const void* const*> CudaBackend::ExpertPointers(std::span<const Tensor> weights) {
  std::vector<uintptr_t> key(weights.size());
  for (size_t e = 0; e < weights.size(); ++e) {
    key[e] = weights[e].defined() ? reinterpret_cast<uintptr_t>(weights[e].raw_data()) : 0;
  }
  auto it = expert_pointers_.find(key);
  if (it == expert_pointers_.end()) {
    // The table's contents are its key, so an entry never goes stale; a model holds a few per
    // layer (one per projection), so the cache stays small.
    ASSIGN_OR_RETURN(DeviceBuffer table, DeviceBuffer::Allocate(key.size() * sizeof(void*)));
    // On the side stream and waited for here: the table must be complete before any kernel
    // reads it, and this upload must not be recorded into a graph being captured on stream_.
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(table.get(), key.data(),
                                                    key.size() * sizeof(void*),
                                                    cudaMemcpyHostToDevice, aux_stream_.get()));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(aux_stream_.get()));
    it = expert_pointers_.emplace(std::move(key), std::move(table)).first;
  }
  return it->second.as<const void* const>();
}

absl::Status CudaBackend::DoEmbedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  EmbeddingArgs a;
  a.table = table.raw_data();
  a.table_dtype = table.dtype();
  a.ids = ids.data<const int32_t>();
  a.out = out.raw_data();
  a.out_dtype = out.dtype();
  a.num_tokens = ids.dim(0);
  a.vocab = table.dim(0);
  a.hidden = table.dim(1);
  a.error_flags = error_flags();
  if (a.num_tokens == 0) return absl::OkStatus();
  return LaunchStatus(Op::kEmbedding, LaunchEmbedding(a, stream_));
}

absl::Status CudaBackend::DoRmsNorm(const Tensor& x, Tensor* residual, const Tensor& weight,
                                    float eps, Tensor& out) {
  RmsNormArgs a;
  a.x = x.raw_data();
  a.out = out.raw_data();
  a.dtype = x.dtype();
  if (residual != nullptr && residual->defined()) {
    a.residual = residual->raw_data();
    a.residual_dtype = residual->dtype();
  }
  a.weight = weight.raw_data();
  a.weight_dtype = weight.dtype();
  a.rows = x.dim(0);
  a.dim = x.dim(1);
  a.eps = eps;
  if (out.dtype() != x.dtype()) {
    return absl::UnimplementedError("rms_norm: the cuda backend needs out in x's dtype");
  }
  if (a.rows == 0) return absl::OkStatus();
  return LaunchStatus(Op::kRmsNorm, LaunchRmsNorm(a, stream_));
}

absl::Status CudaBackend::DoRope(const Tensor& cos_sin, const Tensor& positions,
                                 const kernels::RopeParams& params, Tensor& q, Tensor& k) {
  RopeArgs a;
  a.cos_sin = cos_sin.data<const float>();
  a.max_positions = cos_sin.dim(0);
  a.positions = positions.data<const int32_t>();
  a.num_tokens = positions.dim(0);
  a.style = static_cast<RopeStyleCode>(params.style);
  a.rotary_dim = params.rotary_dim;
  a.rotary_offset = params.rotary_offset;
  a.q = q.raw_data();
  a.q_dtype = q.dtype();
  a.q_heads = q.dim(1);
  a.q_head_dim = q.dim(2);
  if (k.defined()) {
    a.k = k.raw_data();
    a.k_dtype = k.dtype();
    a.k_heads = k.dim(1);
    a.k_head_dim = k.dim(2);
  }
  a.error_flags = error_flags();
  if (a.num_tokens == 0) return absl::OkStatus();
  return LaunchStatus(Op::kRope, LaunchRope(a, stream_));
}

absl::Status CudaBackend::DoLinear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   Tensor& out) {
  if (weight.dtype() == DType::kF8E4M3) return Fp8Linear(x, weight, bias, out);
  if (weight.dtype() == DType::kQ4) return Q4Linear(x, weight, bias, out);
  LinearArgs a;
  a.x = x.raw_data();
  a.x_dtype = x.dtype();
  a.weight = weight.raw_data();
  a.weight_dtype = weight.dtype();
  SetBiasAndOut(bias, out, a);
  a.n = x.dim(0);
  a.in_features = x.dim(1);
  a.out_features = weight.dim(0);
  if (a.n == 0) return absl::OkStatus();
  // CublasLtLinear picks cuBLASLt or the SIMT fallback itself and reports Unimplemented for
  // what neither runs.
  return linear_->Run(a, stream_);
}

absl::Status CudaBackend::DoSiluMul(const Tensor& gate_up, Tensor& out) {
  SiluMulArgs a;
  a.gate_up = gate_up.raw_data();
  a.out = out.raw_data();
  a.dtype = gate_up.dtype();
  a.num_tokens = gate_up.dim(0);
  a.inter = out.dim(1);
  if (out.dtype() != gate_up.dtype()) {
    return absl::UnimplementedError("silu_mul: the cuda backend needs out in gate_up's dtype");
  }
  if (a.num_tokens == 0) return absl::OkStatus();
  return LaunchStatus(Op::kSiluMul, LaunchSiluMul(a, stream_));
}

absl::Status CudaBackend::DoMoeTopK(const Tensor& logits, const Tensor& bias,
                                    const kernels::MoeRoutingParams& params, Tensor& topk_ids,
                                    Tensor& topk_weights) {
  MoeTopKArgs a;
  a.logits = logits.data<const float>();
  a.bias = bias.defined() ? bias.data<const float>() : nullptr;
  a.topk_ids = topk_ids.data<int32_t>();
  a.topk_weights = topk_weights.data<float>();
  a.num_tokens = logits.dim(0);
  a.num_experts = static_cast<int>(logits.dim(1));
  a.scoring = static_cast<MoeScoringCode>(params.scoring);
  a.top_k = params.top_k;
  a.num_groups = params.num_groups;
  a.topk_groups = params.topk_groups;
  a.group_score = static_cast<MoeGroupScoreCode>(params.group_score);
  a.norm_topk_prob = params.norm_topk_prob;
  a.routed_scaling_factor = params.routed_scaling_factor;
  if (a.num_tokens == 0) return absl::OkStatus();
  return LaunchStatus(Op::kMoeTopK, LaunchMoeTopK(a, stream_));
}

absl::Status CudaBackend::DoMoePermute(const Tensor& x, const Tensor& topk_ids, int num_experts,
                                       Tensor& out_x, Tensor& expert_offsets,
                                       Tensor& sorted_slots) {
  MoePermuteArgs a;
  a.x = x.raw_data();
  a.dtype = x.dtype();
  a.topk_ids = topk_ids.data<const int32_t>();
  a.num_tokens = topk_ids.dim(0);
  a.top_k = topk_ids.dim(1);
  a.hidden = x.dim(1);
  a.num_experts = num_experts;
  a.out_x = out_x.raw_data();
  a.expert_offsets = expert_offsets.data<int32_t>();
  a.sorted_slots = sorted_slots.data<int32_t>();
  a.error_flags = error_flags();
  if (out_x.dtype() != x.dtype()) {
    return absl::UnimplementedError("moe_permute: the cuda backend needs out_x in x's dtype");
  }
  // Even with no tokens the offsets must be written (all zero): the launcher does that.
  return LaunchStatus(Op::kMoePermute, LaunchMoePermute(a, stream_));
}

absl::Status CudaBackend::DoMoeGroupedLinear(const Tensor& x, const Tensor& expert_offsets,
                                             std::span<const Tensor> weights, Tensor& out) {
  const Tensor* first = nullptr;
  for (const Tensor& w : weights) {
    if (!w.defined()) continue;
    if (first == nullptr) first = &w;
    if (w.dtype() != first->dtype()) {
      return absl::UnimplementedError(
          "moe_grouped_linear: the cuda backend needs one dtype for all experts' weights");
    }
  }
  if (first != nullptr && first->dtype() == DType::kF8E4M3) {
    return Fp8GroupedLinear(x, expert_offsets, weights, out);
  }
  if (first != nullptr && first->dtype() == DType::kQ4) {
    return Q4GroupedLinear(x, expert_offsets, weights, out);
  }
  if (x.dim(0) == 0) return absl::OkStatus();
  MoeGroupedGemmArgs a;
  a.x = x.raw_data();
  a.x_dtype = x.dtype();
  a.expert_offsets = expert_offsets.data<const int32_t>();
  ASSIGN_OR_RETURN(a.weights, ExpertPointers(weights));
  a.weight_dtype = first != nullptr ? first->dtype() : DType::kBF16;
  a.out = out.raw_data();
  a.out_dtype = out.dtype();
  a.m = x.dim(0);
  a.in_features = x.dim(1);
  a.out_features = out.dim(1);
  a.num_experts = static_cast<int>(weights.size());
  a.error_flags = error_flags();
  a.num_sms = num_sms_;
  return LaunchStatus(Op::kMoeGroupedLinear, LaunchMoeGroupedGemm(a, stream_));
}

absl::Status CudaBackend::DoMoeCombine(const Tensor& y, const Tensor& sorted_slots,
                                       const Tensor& topk_ids, const Tensor& topk_weights,
                                       const Tensor& shared, const Tensor& shared_gate,
                                       Tensor& out) {
  MoeCombineArgs a;
  a.y = y.raw_data();
  a.y_dtype = y.dtype();
  a.sorted_slots = sorted_slots.data<const int32_t>();
  a.topk_ids = topk_ids.data<const int32_t>();
  a.topk_weights = topk_weights.data<const float>();
  if (shared.defined()) {
    a.shared = shared.raw_data();
    a.shared_dtype = shared.dtype();
  }
  if (shared_gate.defined()) {
    a.shared_gate = shared_gate.raw_data();
    a.shared_gate_dtype = shared_gate.dtype();
  }
  a.out = out.raw_data();
  a.out_dtype = out.dtype();
  a.num_tokens = topk_ids.dim(0);
  a.top_k = topk_ids.dim(1);
  a.hidden = y.dim(1);
  a.error_flags = error_flags();
  if (a.num_tokens == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(a.workspace,
                   Workspace(Op::kMoeCombine, MoeCombineWorkspaceBytes(a.num_tokens * a.top_k)));
  return LaunchStatus(Op::kMoeCombine, LaunchMoeCombine(a, stream_));
}

absl::Status CudaBackend::DoKvCacheWrite(const Tensor& k, const Tensor& v,
                                         const Tensor& slot_mapping, Tensor& k_cache,
                                         Tensor& v_cache) {
  KvCacheWriteArgs a;
  a.k = k.raw_data();
  a.v = v.raw_data();
  a.dtype = k.dtype();
  a.slot_mapping = slot_mapping.data<const int32_t>();
  a.k_cache = k_cache.raw_data();
  a.v_cache = v_cache.raw_data();
  a.cache_dtype = k_cache.dtype();
  a.num_tokens = k.dim(0);
  a.kv_heads = k.dim(1);
  a.k_dim = k.dim(2);
  a.v_dim = v.dim(2);
  a.num_slots = k_cache.dim(0) * k_cache.dim(1);
  a.error_flags = error_flags();
  if (a.num_tokens == 0) return absl::OkStatus();
  return LaunchStatus(Op::kKvCacheWrite, LaunchKvCacheWrite(a, stream_));
}

absl::Status CudaBackend::DoPagedAttention(const Tensor& q, const Tensor& k_cache,
                                           const Tensor& v_cache,
                                           const kernels::PagedAttentionBatch& batch, float scale,
                                           Tensor& out) {
  PagedAttentionArgs a;
  a.q = q.raw_data();
  a.q_dtype = q.dtype();
  a.k_cache = k_cache.raw_data();
  a.v_cache = v_cache.raw_data();
  a.cache_dtype = k_cache.dtype();
  a.query_start = batch.query_start.data<const int32_t>();
  a.seq_lens = batch.seq_lens.data<const int32_t>();
  a.block_tables = batch.block_tables.data<const int32_t>();
  a.out = out.raw_data();
  a.num_tokens = q.dim(0);
  a.num_seqs = batch.seq_lens.dim(0);
  a.q_heads = q.dim(1);
  a.kv_heads = k_cache.dim(2);
  a.k_dim = k_cache.dim(3);
  a.v_dim = v_cache.dim(3);
  a.num_blocks = k_cache.dim(0);
  a.block_size = k_cache.dim(1);
  a.max_blocks_per_seq = batch.block_tables.dim(1);
  a.scale = scale;
  a.error_flags = error_flags();
  if (a.num_tokens == 0 || a.num_seqs == 0) return absl::OkStatus();
  a.workspace_bytes = PagedAttentionWorkspaceBytes(a);
  ASSIGN_OR_RETURN(a.workspace, Workspace(Op::kPagedAttention, a.workspace_bytes));
  return LaunchStatus(Op::kPagedAttention, LaunchPagedAttention(a, stream_));
}

absl::Status CudaBackend::DoSampleTokens(const Tensor& logits,
                                         std::span<const kernels::SamplingRow> params,
                                         Tensor& tokens) {
  const int64_t rows = logits.dim(0), vocab = logits.dim(1);
  // Per-row parameters and the kernel's scratch come from the activation pool; both are used
  // in stream order, so returning them to the pool at the end of this call is safe.
  ASSIGN_OR_RETURN(Tensor device_params,
                   Allocate(DType::kU8, {static_cast<int64_t>(params.size_bytes())}));
  RETURN_IF_ERROR(CopyFromHost(params.data(), device_params));
  const size_t scratch_bytes = SamplingWorkspaceBytes(rows, vocab);
  ASSIGN_OR_RETURN(Tensor scratch, Allocate(DType::kU8, {static_cast<int64_t>(scratch_bytes)}));
  SamplingArgs a;
  a.logits = logits.data<const float>();
  a.rows = rows;
  a.vocab = vocab;
  a.params = static_cast<const kernels::SamplingRow*>(device_params.raw_data());
  a.tokens = tokens.data<int32_t>();
  a.workspace = scratch.raw_data();
  a.error_flags = error_flags();
  return LaunchStatus(Op::kSampleTokens, LaunchSampling(a, stream_));
}

absl::Status CudaBackend::DoMaskLogits(const Tensor& masks, std::span<const int32_t> rows,
                                       Tensor& logits) {
  // The row indices come from the activation pool, used in stream order as DoSampleTokens' params.
  ASSIGN_OR_RETURN(Tensor device_rows, Allocate(DType::kI32, {static_cast<int64_t>(rows.size())}));
  RETURN_IF_ERROR(CopyFromHost(rows.data(), device_rows));
  MaskLogitsArgs a;
  a.logits = logits.data<float>();
  a.vocab = logits.dim(1);
  a.masks = reinterpret_cast<const uint32_t*>(masks.data<const int32_t>());
  a.rows = device_rows.data<const int32_t>();
  a.num_masks = static_cast<int64_t>(rows.size());
  return LaunchStatus(Op::kMaskLogits, LaunchMaskLogits(a, stream_));
}

}  // namespace expertmesh::cuda
