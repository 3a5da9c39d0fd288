// The kernels behind LaunchPagedAttention (paged_attention.h), each in its own .cu file. The
// dispatcher (paged_attention.cc) plans the launch; these only enqueue.
#ifndef EXPERTMESH_KERNELS_CUDA_ATTENTION_ATTENTION_KERNELS_H_
#define EXPERTMESH_KERNELS_CUDA_ATTENTION_ATTENTION_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/attention/paged_attention.h"

namespace expertmesh::cuda::attention {

// How the split-K kernel cuts the work: each CTA takes `rows_per_tile` query rows of one
// (sequence, kv head) pair -- row r is token r / group, q head kv_head * group + r % group -- and
// the keys [split * split_tokens, (split + 1) * split_tokens) of its context, staged through
// shared memory `keys_per_tile` at a time.
struct SplitKPlan {
  int rows_per_tile = 0;
  int keys_per_tile = 0;
  int splits = 1;
  int64_t split_tokens = 0;
  int64_t num_tiles = 0;  // an upper bound of the row tiles over all sequences
  size_t smem_bytes = 0;
  size_t workspace_bytes = 0;  // 0 when splits == 1 (the kernel writes out directly)
};

// False when no tile shape fits in shared memory.
bool PlanSplitK(const PagedAttentionArgs& args, SplitKPlan* plan);

// Upper bound of the tiles of `rows_per_tile` rows when each sequence's q_len * group rows are
// cut into tiles: sum ceil(q_len * group / rows) <= num_tokens * group / rows + num_seqs.
int64_t TileBound(const PagedAttentionArgs& args, int rows_per_tile);

cudaError_t LaunchSimple(const PagedAttentionArgs& args, cudaStream_t stream);
cudaError_t LaunchSplitK(const PagedAttentionArgs& args, const SplitKPlan& plan,
                         cudaStream_t stream);
// Whether the tensor-core kernel implements these dtypes, dims and pointer alignments.
bool TensorCoreSupports(const PagedAttentionArgs& args);
cudaError_t LaunchTensorCore(const PagedAttentionArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda::attention

#endif  // EXPERTMESH_KERNELS_CUDA_ATTENTION_ATTENTION_KERNELS_H_
