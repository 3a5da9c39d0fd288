// Weighted sum of each token's expert outputs plus an optional (gated) shared expert, on the GPU
// (kernels::Backend::MoeCombine):
//   out[t] = sum_j w[t, j] * y[row of slot t*k+j]  (j in ascending (expert id, j) order, fp32)
//            + (shared_gate ? sigmoid(shared_gate[t]) : 1) * shared[t].
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_MOE_COMBINE_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_MOE_COMBINE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

struct MoeCombineArgs {
  const void* y = nullptr;  // [num_tokens * top_k, hidden] y_dtype (kF32 or kBF16)
  DType y_dtype = DType::kBF16;
  const int32_t* sorted_slots = nullptr;  // [num_tokens * top_k] from MoePermute
  const int32_t* topk_ids = nullptr;      // [num_tokens, top_k]
  const float* topk_weights = nullptr;    // [num_tokens, top_k]
  const void* shared = nullptr;           // [num_tokens, hidden] shared_dtype, or null
  DType shared_dtype = DType::kBF16;
  const void* shared_gate = nullptr;  // [num_tokens] shared_gate_dtype (pre-sigmoid), or null
  DType shared_gate_dtype = DType::kBF16;
  void* out = nullptr;  // [num_tokens, hidden] out_dtype (kF32 or kBF16)
  DType out_dtype = DType::kBF16;
  int64_t num_tokens = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  void* workspace = nullptr;        // MoeCombineWorkspaceBytes(num_tokens * top_k) bytes, 4-aligned
  uint32_t* error_flags = nullptr;  // kErrorMoeExpertId; may be null
};

// Scratch for the inverse of sorted_slots (the y row of each slot).
size_t MoeCombineWorkspaceBytes(int64_t num_slots);

// sorted_slots that are not a permutation of [0, num_tokens * top_k) set kErrorMoeExpertId
// (there is no separate bit for it); a slot without a row then contributes nothing.
// cudaErrorInvalidValue for an unsupported dtype or a missing workspace.
cudaError_t LaunchMoeCombine(const MoeCombineArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_MOE_COMBINE_H_
