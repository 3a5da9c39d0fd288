// Groups token copies by expert on the GPU (kernels::Backend::MoePermute): slot s = t * top_k + j
// is token t's j-th choice; rows are ordered by expert, then by slot (stable). Offsets are
// computed on the device (histogram, exclusive scan, stable scatter) without host reads, and
// the order never depends on atomics, so the result is bit-identical to the CPU backend's.
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_MOE_PERMUTE_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_MOE_PERMUTE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

// The most experts the permute handles (its per-expert tables live in shared memory).
inline constexpr int kMoePermuteMaxExperts = 1024;

struct MoePermuteArgs {
  const void* x = nullptr;            // [num_tokens, hidden] dtype
  DType dtype = DType::kBF16;         // kF32 or kBF16 (rows are copied bit-exactly)
  const int32_t* topk_ids = nullptr;  // [num_tokens, top_k]
  int64_t num_tokens = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  int num_experts = 0;
  void* out_x = nullptr;              // [num_tokens * top_k, hidden] dtype
  int32_t* expert_offsets = nullptr;  // [num_experts + 1]
  int32_t* sorted_slots = nullptr;    // [num_tokens * top_k]
  uint32_t* error_flags = nullptr;    // kErrorMoeExpertId; may be null
};

// Needs no workspace. An expert id outside [0, num_experts) sets kErrorMoeExpertId; that slot
// is left out (offsets[E] is then < m, the trailing sorted_slots are -1 and their out_x rows
// are not written). cudaErrorInvalidValue for num_experts > kMoePermuteMaxExperts or a dtype
// other than kF32/kBF16.
cudaError_t LaunchMoePermute(const MoePermuteArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_MOE_PERMUTE_H_
