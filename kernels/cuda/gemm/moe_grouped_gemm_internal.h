// The kernels behind LaunchMoeGroupedGemm (moe_grouped_gemm.cu picks one). Arguments are
// already validated there: dtypes, sizes within int, 1 <= num_experts <= the maximum.
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_MOE_GROUPED_GEMM_INTERNAL_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_MOE_GROUPED_GEMM_INTERNAL_H_

#include <cuda_runtime_api.h>

#include "kernels/cuda/gemm/moe_grouped_gemm.h"

namespace expertmesh::cuda::gemm_internal {

enum class MmaTile { kLarge, kSmall };

// bf16 x bf16 on tensor cores. REQUIRES: in_features % 8 == 0 and > 0; x, out and every weight
// 16-byte aligned.
cudaError_t LaunchMoeGemmMma(const MoeGroupedGemmArgs& args, MmaTile tile, int num_sms,
                             cudaStream_t stream);

// Any f32/bf16 mix, any shape.
cudaError_t LaunchMoeGemmSimt(const MoeGroupedGemmArgs& args, int num_sms, cudaStream_t stream);

// The SM count the persistent grids are sized for: `requested` when positive, else the current
// device's multiprocessor count (shared with LaunchFp8Gemm).
cudaError_t ResolveNumSms(int requested, int* num_sms);

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_MOE_GROUPED_GEMM_INTERNAL_H_
