// fp8 weights on the CUDA backend: what PrepareWeight uploads besides the e4m3 bytes, and how
// ops describe a device weight's scales to the kernels (kernels/cuda/gemm/fp8_gemm.h).
//
// The upload never widens: the weight keeps one byte per element, and its block-scale grid is
// trimmed to the blocks the weight touches (a tensor- or expert-parallel slice carries the whole
// checkpoint tensor's grid on the host; the device keeps only its own rows and columns of it),
// with the offsets reduced to the position inside the first block.
#ifndef EXPERTMESH_KERNELS_CUDA_BACKEND_FP8_WEIGHT_PREP_H_
#define EXPERTMESH_KERNELS_CUDA_BACKEND_FP8_WEIGHT_PREP_H_

#include <span>

#include "absl/status/statusor.h"
#include "kernels/cuda/gemm/fp8_gemm.h"
#include "kernels/tensor.h"

namespace expertmesh::cuda {

struct TrimmedScales {
  kernels::Tensor grid;         // host f32 [row blocks touched, col blocks touched]
  kernels::BlockScales layout;  // block shape and offsets into `grid` (scales unset)
};

// The part of `host_weight`'s scale grid its elements use.
// REQUIRES: host_weight is a 2-D fp8 host tensor with host block scales.
// Errors: InvalidArgument otherwise; ResourceExhausted for the host copy.
absl::StatusOr<TrimmedScales> TrimBlockScales(const kernels::Tensor& host_weight);

// A device fp8 weight's scales as the kernels take them.
// REQUIRES: `weight` carries block scales (on the device).
Fp8Scales Fp8ScalesOf(const kernels::Tensor& weight);

// What Fp8GemmArgs records about a set of weights' scales (min_block_cols, blocks_128_aligned).
// Undefined tensors are skipped.
void SummarizeFp8Scales(std::span<const kernels::Tensor> weights, Fp8GemmArgs& args);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_BACKEND_FP8_WEIGHT_PREP_H_
