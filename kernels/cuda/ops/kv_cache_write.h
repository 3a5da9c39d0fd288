// Stores a step's keys and values into the paged KV cache on the GPU
// (kernels::Backend::KvCacheWrite): k_cache[slot / block_size, slot % block_size] = k[t] for
// slot = slot_mapping[t] >= 0; the same for v. Negative slots (padding) are skipped.
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_KV_CACHE_WRITE_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_KV_CACHE_WRITE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

struct KvCacheWriteArgs {
  const void* k = nullptr;                // [num_tokens, kv_heads, k_dim] dtype
  const void* v = nullptr;                // [num_tokens, kv_heads, v_dim] dtype
  DType dtype = DType::kBF16;             // of k and v: kF32 or kBF16
  const int32_t* slot_mapping = nullptr;  // [num_tokens]
  void* k_cache = nullptr;                // [num_blocks, block_size, kv_heads, k_dim] cache_dtype
  void* v_cache = nullptr;                // [num_blocks, block_size, kv_heads, v_dim] cache_dtype
  DType cache_dtype = DType::kBF16;       // dtype (bit-exact copy) or kBF16 from kF32 (rounded)
  int64_t num_tokens = 0;
  int64_t kv_heads = 0;
  int64_t k_dim = 0;
  int64_t v_dim = 0;
  int64_t num_slots = 0;            // num_blocks * block_size
  uint32_t* error_flags = nullptr;  // kErrorKvSlot; may be null
};

// A slot >= num_slots sets kErrorKvSlot and that token is not written.
// cudaErrorInvalidValue for an unsupported dtype pair.
cudaError_t LaunchKvCacheWrite(const KvCacheWriteArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_KV_CACHE_WRITE_H_
