// Data-dependent errors found by CUDA kernels (an id or a slot out of range). A kernel cannot
// return a status, and reading its verdict back would cost a synchronisation per op, so each
// kernel that checks data sets its bit in a device word (atomicOr) and skips the bad element
// without touching memory out of range. The backend reads the word at the next synchronisation
// point (Synchronize, CopyToHost) and turns set bits into InvalidArgument naming the op.
#ifndef EXPERTMESH_KERNELS_CUDA_ERROR_FLAGS_H_
#define EXPERTMESH_KERNELS_CUDA_ERROR_FLAGS_H_

#include <cstdint>

namespace expertmesh::cuda {

enum ErrorFlag : uint32_t {
  kErrorEmbeddingId = 1u << 0,          // a token id outside [0, vocab)
  kErrorMoeExpertId = 1u << 1,          // an expert id outside [0, num_experts)
  kErrorKvSlot = 1u << 2,               // a slot >= num_blocks * block_size
  kErrorBlockId = 1u << 3,              // a block table entry outside [0, num_blocks)
  kErrorRopePosition = 1u << 4,         // a position outside [0, max_positions)
  kErrorExpertOffsets = 1u << 5,        // offsets not from 0 to m, or decreasing
  kErrorMissingExpertWeight = 1u << 6,  // rows for an expert whose weight is null
  kErrorSampling = 1u << 7,             // no finite logit to sample from
};

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_ERROR_FLAGS_H_
