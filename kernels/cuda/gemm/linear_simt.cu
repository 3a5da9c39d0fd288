// The fp32 SIMT fallback of the dense linear: one 64x64 output tile per CTA.
#include "kernels/cuda/gemm/linear_simt.h"

#include <cuda_bf16.h>

#include <climits>

#include "kernels/cuda/gemm/simt_tile.cuh"

namespace expertmesh::cuda {
namespace {

using gemm_internal::kSimtThreads;
using gemm_internal::kSimtTile;

template <typename XT, typename WT, typename BT, typename OT>
__global__ void __launch_bounds__(kSimtThreads)
    LinearSimtKernel(const XT* __restrict__ x, const WT* __restrict__ w,
                     const BT* __restrict__ bias, OT* __restrict__ out, int n, int in, int out_f) {
  __shared__ gemm_internal::SimtSmem smem;
  const int row_begin = static_cast<int>(blockIdx.y) * kSimtTile;
  const int row_end = min(row_begin + kSimtTile, n);
  gemm_internal::SimtGemmTile(x, w, bias, out, row_begin, row_end,
                              static_cast<int>(blockIdx.x) * kSimtTile, out_f, in, smem);
}

template <typename XT, typename WT, typename BT, typename OT>
cudaError_t Launch(const LinearArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.out_features + kSimtTile - 1) / kSimtTile),
                  static_cast<unsigned>((a.n + kSimtTile - 1) / kSimtTile));
  if (grid.y > 65535u) return cudaErrorInvalidValue;
  LinearSimtKernel<XT, WT, BT, OT><<<grid, kSimtThreads, 0, stream>>>(
      static_cast<const XT*>(a.x), static_cast<const WT*>(a.weight), static_cast<const BT*>(a.bias),
      static_cast<OT*>(a.out), static_cast<int>(a.n), static_cast<int>(a.in_features),
      static_cast<int>(a.out_features));
  return cudaGetLastError();
}

bool IsF32OrBf16(DType d) { return d == DType::kF32 || d == DType::kBF16; }

template <typename XT, typename WT, typename BT>
cudaError_t DispatchOut(const LinearArgs& a, cudaStream_t stream) {
  return a.out_dtype == DType::kF32 ? Launch<XT, WT, BT, float>(a, stream)
                                    : Launch<XT, WT, BT, __nv_bfloat16>(a, stream);
}

template <typename XT, typename WT>
cudaError_t DispatchBias(const LinearArgs& a, cudaStream_t stream) {
  // Without a bias the pointer is null and its type irrelevant: use float.
  if (a.bias == nullptr || a.bias_dtype == DType::kF32) {
    return DispatchOut<XT, WT, float>(a, stream);
  }
  return DispatchOut<XT, WT, __nv_bfloat16>(a, stream);
}

template <typename XT>
cudaError_t DispatchWeight(const LinearArgs& a, cudaStream_t stream) {
  return a.weight_dtype == DType::kF32 ? DispatchBias<XT, float>(a, stream)
                                       : DispatchBias<XT, __nv_bfloat16>(a, stream);
}

}  // namespace

cudaError_t LaunchLinearSimt(const LinearArgs& args, cudaStream_t stream) {
  if (!IsF32OrBf16(args.x_dtype) || !IsF32OrBf16(args.weight_dtype) ||
      !IsF32OrBf16(args.out_dtype) || (args.bias != nullptr && !IsF32OrBf16(args.bias_dtype))) {
    return cudaErrorInvalidValue;
  }
  if (args.n < 0 || args.in_features < 0 || args.out_features < 0 || args.n > INT_MAX ||
      args.in_features > INT_MAX || args.out_features > INT_MAX) {
    return cudaErrorInvalidValue;
  }
  if (args.n == 0 || args.out_features == 0) return cudaSuccess;
  return args.x_dtype == DType::kF32 ? DispatchWeight<float>(args, stream)
                                     : DispatchWeight<__nv_bfloat16>(args, stream);
}

}  // namespace expertmesh::cuda
