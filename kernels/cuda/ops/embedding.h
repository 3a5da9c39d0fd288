// Embedding lookup on the GPU: out[t, :] = table[ids[t], :] (kernels::Backend::Embedding).
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_EMBEDDING_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_EMBEDDING_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

struct EmbeddingArgs {
  const void* table = nullptr;  // [vocab, hidden] table_dtype: kBF16, kF32 or kF16
  DType table_dtype = DType::kBF16;
  const int32_t* ids = nullptr;  // [num_tokens]
  void* out = nullptr;           // [num_tokens, hidden] out_dtype: kF32 or kBF16
  DType out_dtype = DType::kBF16;
  int64_t num_tokens = 0;
  int64_t vocab = 0;
  int64_t hidden = 0;
  uint32_t* error_flags = nullptr;  // kErrorEmbeddingId; may be null
};

// An id outside [0, vocab) sets kErrorEmbeddingId and its output row is zeroed. Same dtypes copy
// bit-exactly; otherwise the value goes through fp32 and a bf16 output is rounded to nearest even.
// cudaErrorInvalidValue for a dtype pair not listed above.
cudaError_t LaunchEmbedding(const EmbeddingArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_EMBEDDING_H_
