// RMSNorm with an optional fused residual add on the GPU (kernels::Backend::RmsNorm):
//   if residual: residual = round_to(residual_dtype, x + residual); h = residual; else h = x;
//   out = weight * round_to(dtype, h * rsqrt(mean(h^2) + eps)).
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_RMS_NORM_H_
#define EXPERTMESH_KERNELS_CUDA_OPS_RMS_NORM_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

struct RmsNormArgs {
  const void* x = nullptr;     // [rows, dim] dtype
  void* out = nullptr;         // [rows, dim] dtype; may alias x
  DType dtype = DType::kBF16;  // of x and out: kF32 or kBF16
  void* residual = nullptr;    // [rows, dim] residual_dtype, read and written; null = none.
                               // Must not alias out.
  DType residual_dtype = DType::kBF16;  // kF32 or kBF16
  const void* weight = nullptr;         // [dim] weight_dtype
  DType weight_dtype = DType::kBF16;    // kF32 or kBF16
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-6f;
};

// The sum of squares is accumulated in fp32 (the CPU uses double; the difference is far below
// the bf16 rounding). cudaErrorInvalidValue for an unsupported dtype.
cudaError_t LaunchRmsNorm(const RmsNormArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_RMS_NORM_H_
