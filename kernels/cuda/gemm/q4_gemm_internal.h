// The kernels behind LaunchQ4Gemm (q4_gemm.cu validates and picks one). Arguments are already
// checked there: dtypes, k % 32 == 0, sizes within int, 1 <= num_experts <=
// kMoeGroupedGemmMaxExperts, and each path's own requirements (below).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_Q4_GEMM_INTERNAL_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_Q4_GEMM_INTERNAL_H_

#include <cuda_runtime_api.h>

#include "kernels/cuda/gemm/q4_gemm.h"

namespace expertmesh::cuda::gemm_internal {

// Any shape.
cudaError_t LaunchQ4Simt(const Q4GemmArgs& args, int num_sms, cudaStream_t stream);

// REQUIRES: k > 0, x 16-byte aligned.
cudaError_t LaunchQ4Gemv(const Q4GemmArgs& args, int num_sms, cudaStream_t stream);

// REQUIRES: bf16 x, no bias, k > 0, x and out 16-byte aligned. `small_tile`: the 32-row tile
// for a few rows per expert.
cudaError_t LaunchQ4Mma(const Q4GemmArgs& args, bool small_tile, int num_sms, cudaStream_t stream);

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_Q4_GEMM_INTERNAL_H_
