// The kernels behind LaunchFp8Gemm (fp8_gemm.cu validates and picks one). Arguments are already
// checked there: dtypes, sizes within int, 1 <= num_experts <= kMoeGroupedGemmMaxExperts, and
// each path's own requirements (below).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_FP8_GEMM_INTERNAL_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_FP8_GEMM_INTERNAL_H_

#include <cuda_runtime_api.h>

#include "kernels/cuda/gemm/fp8_gemm.h"

namespace expertmesh::cuda::gemm_internal {

// Any shape, block shape and offsets.
cudaError_t LaunchFp8Simt(const Fp8GemmArgs& args, int num_sms, cudaStream_t stream);

// REQUIRES: k % 16 == 0, x 16-byte aligned, min_block_cols >= 16.
cudaError_t LaunchFp8Gemv(const Fp8GemmArgs& args, int num_sms, cudaStream_t stream);

// REQUIRES: bf16 x, no bias, k % 16 == 0, x and out 16-byte aligned, min_block_cols >= 16.
// `small_tile`: the 32-row tile for a few rows per expert.
cudaError_t LaunchFp8MmaW8A16(const Fp8GemmArgs& args, bool small_tile, int num_sms,
                              cudaStream_t stream);

// REQUIRES: as LaunchFp8MmaW8A16, plus blocks_128_aligned and the workspace.
cudaError_t LaunchFp8W8A8(const Fp8GemmArgs& args, int num_sms, cudaStream_t stream);

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_FP8_GEMM_INTERNAL_H_
