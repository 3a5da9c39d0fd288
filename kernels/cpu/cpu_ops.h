// The CPU ops behind CpuBackend's Do* methods, one family per .cc file. Arguments are already
// validated by kernels::Backend (shapes, dtypes); these check only data (ids, slots, blocks).
#ifndef EXPERTMESH_KERNELS_CPU_CPU_OPS_H_
#define EXPERTMESH_KERNELS_CPU_CPU_OPS_H_

#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace expertmesh::kernels::cpu {

using kernels::Tensor;

// Rows of an f32 or bf16 tensor as f32: the data itself for f32, else a converted copy in
// `scratch`. `t` is viewed as [rows, cols] (its numel must be rows*cols).
const float* AsF32(const CpuContext& ctx, const Tensor& t, std::vector<float>& scratch);
// Reads `count` elements of `t` (f32, bf16 or f16) from element `offset` into dst as f32.
void LoadF32(const CpuContext& ctx, const Tensor& t, int64_t offset, int64_t count, float* dst);
// Writes `count` f32 values into `dst` (f32 or bf16) starting at element `offset`.
void StoreF32(const CpuContext& ctx, const float* src, Tensor& dst, int64_t offset, int64_t count);
// One element of an f32/bf16/f16 tensor as f32.
float LoadScalar(const Tensor& t, int64_t index);
void StoreScalar(Tensor& t, int64_t index, float value);

// cpu_elementwise.cc
absl::Status CpuEmbedding(const CpuContext& ctx, const Tensor& table, const Tensor& ids,
                          Tensor& out);
absl::Status CpuRmsNorm(const CpuContext& ctx, const Tensor& x, Tensor* residual,
                        const Tensor& weight, float eps, Tensor& out);
absl::Status CpuSiluMul(const CpuContext& ctx, const Tensor& gate_up, Tensor& out);
// cpu_rope.cc
absl::Status CpuRope(const CpuContext& ctx, const Tensor& cos_sin, const Tensor& positions,
                     const kernels::RopeParams& params, Tensor& q, Tensor& k);
// cpu_linear.cc
absl::Status CpuLinear(const CpuContext& ctx, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, Tensor& out);
absl::Status CpuMoeGroupedLinear(const CpuContext& ctx, const Tensor& x,
                                 const Tensor& expert_offsets, std::span<const Tensor> weights,
                                 Tensor& out);
// cpu_moe.cc
absl::Status CpuMoeTopK(const CpuContext& ctx, const Tensor& logits, const Tensor& bias,
                        const kernels::MoeRoutingParams& params, Tensor& topk_ids,
                        Tensor& topk_weights);
absl::Status CpuMoePermute(const CpuContext& ctx, const Tensor& x, const Tensor& topk_ids,
                           int num_experts, Tensor& out_x, Tensor& expert_offsets,
                           Tensor& sorted_slots);
absl::Status CpuMoeCombine(const CpuContext& ctx, const Tensor& y, const Tensor& sorted_slots,
                           const Tensor& topk_ids, const Tensor& topk_weights, const Tensor& shared,
                           const Tensor& shared_gate, Tensor& out);
// cpu_attention.cc
absl::Status CpuKvCacheWrite(const CpuContext& ctx, const Tensor& k, const Tensor& v,
                             const Tensor& slot_mapping, Tensor& k_cache, Tensor& v_cache);
absl::Status CpuPagedAttention(const CpuContext& ctx, const Tensor& q, const Tensor& k_cache,
                               const Tensor& v_cache, const kernels::PagedAttentionBatch& batch,
                               float scale, Tensor& out);

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_CPU_OPS_H_
