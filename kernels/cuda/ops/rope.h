// Rotary embedding in place on q and (optionally) k (kernels::Backend::Rope).
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_ROPE_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_ROPE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

// Same values and meaning as kernels::RopeStyle (this header cannot include backend.h).
enum class RopeStyleCode : uint8_t { kNeox = 0, kInterleaved = 1, kDeinterleaveNeox = 2 };

struct RopeArgs {
  const float* cos_sin = nullptr;  // [max_positions, rotary_dim] f32 (BuildRopeCache layout)
  int64_t max_positions = 0;
  const int32_t* positions = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  RopeStyleCode style = RopeStyleCode::kNeox;
  int rotary_dim = 0;     // even, > 0
  int rotary_offset = 0;  // rotary_offset + rotary_dim <= head dim of q and k
  void* q = nullptr;      // [num_tokens, q_heads, q_head_dim] q_dtype (kF32 or kBF16)
  DType q_dtype = DType::kBF16;
  int64_t q_heads = 0;
  int64_t q_head_dim = 0;
  void* k = nullptr;  // [num_tokens, k_heads, k_head_dim] k_dtype, or null (q only)
  DType k_dtype = DType::kBF16;
  int64_t k_heads = 0;
  int64_t k_head_dim = 0;
  uint32_t* error_flags = nullptr;  // kErrorRopePosition; may be null
};

// A position outside [0, max_positions) sets kErrorRopePosition and leaves that token's q and k
// unchanged. cudaErrorInvalidValue for an unsupported dtype or style.
cudaError_t LaunchRope(const RopeArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_ROPE_H_
