// MoE router top-k on the GPU, one warp per token, in one kernel (kernels::Backend::MoeTopK;
// see kernels::MoeRoutingParams for the semantics, which this follows exactly).
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_MOE_TOPK_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_MOE_TOPK_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

// Same values and meaning as kernels::MoeScoring / kernels::MoeGroupScore.
enum class MoeScoringCode : uint8_t { kSoftmax = 0, kSigmoid = 1 };
enum class MoeGroupScoreCode : uint8_t { kMax = 0, kTop2Sum = 1 };

// The most experts the kernel handles (16 per lane of a warp).
inline constexpr int kMoeTopKMaxExperts = 512;

struct MoeTopKArgs {
  const float* logits = nullptr;  // [num_tokens, num_experts]
  const float* bias = nullptr;    // [num_experts] e_score_correction_bias, or null
  int32_t* topk_ids = nullptr;    // [num_tokens, top_k], in descending choice order
  float* topk_weights = nullptr;  // [num_tokens, top_k]
  int64_t num_tokens = 0;
  int num_experts = 0;
  MoeScoringCode scoring = MoeScoringCode::kSoftmax;
  int top_k = 1;
  int num_groups = 1;
  int topk_groups = 1;
  MoeGroupScoreCode group_score = MoeGroupScoreCode::kTop2Sum;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
};

// Arguments are assumed validated as Backend::MoeTopK does. cudaErrorInvalidValue for
// num_experts > kMoeTopKMaxExperts.
cudaError_t LaunchMoeTopK(const MoeTopKArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_MOE_TOPK_H_
