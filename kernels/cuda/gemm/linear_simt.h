// Dense linear (kernels::Backend::Linear): out = x @ W^T (+ bias), fp32 accumulation.
// LinearArgs is shared with CublasLtLinear (cublaslt_linear.h), which serves the bf16 and pure
// f32 products; this header's launcher is the fp32 SIMT fallback for everything else (f32
// activations with bf16 weights in exact mode, bias/output dtype mixes cuBLASLt lacks).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_LINEAR_SIMT_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_LINEAR_SIMT_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

struct LinearArgs {
  const void* x = nullptr;            // [n, in_features] x_dtype
  DType x_dtype = DType::kBF16;       // kBF16 or kF32
  const void* weight = nullptr;       // [out_features, in_features] row-major (Hugging Face layout)
  DType weight_dtype = DType::kBF16;  // kBF16 or kF32
  const void* bias = nullptr;         // [out_features] bias_dtype, or null
  DType bias_dtype = DType::kBF16;    // kBF16 or kF32 (ignored without a bias)
  void* out = nullptr;                // [n, out_features] out_dtype
  DType out_dtype = DType::kBF16;     // kBF16 or kF32
  int64_t n = 0;
  int64_t in_features = 0;
  int64_t out_features = 0;
};

// Any combination of kF32/kBF16 dtypes, any sizes up to INT32_MAX, any alignment. Each output
// is an fp32 sum in k order, plus the bias, rounded once. Needs no workspace.
// cudaErrorInvalidValue for other dtypes or sizes over INT32_MAX.
cudaError_t LaunchLinearSimt(const LinearArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_LINEAR_SIMT_H_
