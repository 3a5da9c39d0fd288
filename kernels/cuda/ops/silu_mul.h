// out = silu(gate_up[:, :inter]) * gate_up[:, inter:] on the GPU (kernels::Backend::SiluMul).
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_SILU_MUL_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_SILU_MUL_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

struct SiluMulArgs {
  const void* gate_up = nullptr;  // [num_tokens, 2 * inter] dtype, gate columns first
  void* out = nullptr;            // [num_tokens, inter] dtype
  DType dtype = DType::kBF16;     // kF32 or kBF16
  int64_t num_tokens = 0;
  int64_t inter = 0;
};

// As HF: silu(gate) is rounded to the compute dtype before the multiply.
// cudaErrorInvalidValue for an unsupported dtype.
cudaError_t LaunchSiluMul(const SiluMulArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_SILU_MUL_H_
