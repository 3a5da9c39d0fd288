// Causal paged attention on the GPU (kernels::Backend::PagedAttention): the queries of a step
// against the paged KV cache, for prefill, chunked prefill, decode and MLA's latent cache alike.
// Sequence s owns query rows [query_start[s], query_start[s+1]); its row i sits at absolute
// position seq_lens[s] - q_len + i and sees cache positions [0, that position]. Softmax in fp32,
// GQA/MQA by q_heads / kv_heads, output rounded once to q's dtype.
//
// LaunchPagedAttention picks a kernel from the shapes and dtypes the host knows:
//   - kTensorCore: bf16 q and cache, (k_dim, v_dim) in {(64,64), (128,128), (192,128)}, and a
//     batch with some prefill (num_tokens > num_seqs): flash-attention with mma.sync.
//   - kSplitK: everything else whose tiles fit in shared memory: all q heads of a kv head at
//     once, the context split over CTAs with partial softmax states in the workspace, then a
//     reduce. When k_cache == v_cache (MLA's latent cache) each cache row is loaded once for
//     both the scores and the values.
//   - kSimple: one CTA per (token, q head), any dims; the fallback for the rest.
// Every kernel computes every valid batch correctly; the choice is only about speed.
#ifndef EXPERTMESH_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_H_
#define EXPERTMESH_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

enum class PagedAttentionPath : uint8_t {
  kAuto,        // as described above
  kSimple,      // forced, for tests and benchmarks
  kSplitK,      // forced; cudaErrorInvalidValue when the dims do not fit in shared memory
  kTensorCore,  // forced; cudaErrorInvalidValue for dtypes/dims it does not implement
};

struct PagedAttentionArgs {
  const void* q = nullptr;           // [num_tokens, q_heads, k_dim] q_dtype
  DType q_dtype = DType::kBF16;      // kF32 or kBF16; also out's dtype
  const void* k_cache = nullptr;     // [num_blocks, block_size, kv_heads, k_dim] cache_dtype
  const void* v_cache = nullptr;     // [num_blocks, block_size, kv_heads, v_dim]; may be k_cache
  DType cache_dtype = DType::kBF16;  // q_dtype, or kBF16 with kF32 q
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* seq_lens = nullptr;      // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  void* out = nullptr;                    // [num_tokens, q_heads, v_dim] q_dtype
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t q_heads = 0;
  int64_t kv_heads = 0;
  int64_t k_dim = 0;
  int64_t v_dim = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t max_blocks_per_seq = 0;
  float scale = 1.0f;
  // Scratch of at least PagedAttentionWorkspaceBytes(*this) bytes, 16-byte aligned (may be null
  // when that is 0).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // kErrorBlockId for a block id outside [0, num_blocks) and for an inconsistent batch
  // (query_start not from 0 to num_tokens or decreasing, seq_len < q_len or beyond the block
  // table); the affected outputs are unspecified. May be null.
  uint32_t* error_flags = nullptr;
  PagedAttentionPath path = PagedAttentionPath::kAuto;
};

// The workspace LaunchPagedAttention needs for these shapes, dtypes and path (pointers are
// ignored). 0 when the chosen kernel needs none.
size_t PagedAttentionWorkspaceBytes(const PagedAttentionArgs& args);

// Enqueues the attention on `stream`. cudaErrorInvalidValue for a dtype pair or a forced path
// that is not implemented, or a workspace that is too small.
cudaError_t LaunchPagedAttention(const PagedAttentionArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_H_
