// Host-side launch of the q4 SIMT-style kernels (q4_gemv.cu, q4_gemm_simt.cu): the persistent
// grid on the grouped GEMM's schedule and the dispatch on x's, the bias's and out's dtypes (f32
// or bf16; no bias launches the f32 one). As fp8_launch.cuh, over a Q4Source.
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_Q4_LAUNCH_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_Q4_LAUNCH_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/q4_common.cuh"
#include "kernels/cuda/gemm/q4_gemm.h"

namespace expertmesh::cuda::gemm_internal {

// `Path` names the kernel and its shape:
//   static constexpr int kTileM, kTileN;  // a work item's rows and weight rows
//   static constexpr int kThreads, kCtasPerSm;
//   template <typename XT, typename BT, typename OT> static auto Kernel();  // &kernel<XT, BT, OT>
// where every kernel takes (x, expert_offsets, Q4Source, bias, out, m, k, n, num_experts,
// error_flags) and no dynamic shared memory.
template <typename Path, typename XT, typename BT, typename OT>
cudaError_t LaunchQ4Typed(const Q4GemmArgs& a, int num_sms, cudaStream_t stream) {
  const unsigned grid =
      MoeGridSize<Path::kTileM, Path::kTileN>(a.m, a.n, a.num_experts, num_sms, Path::kCtasPerSm);
  auto* kernel = Path::template Kernel<XT, BT, OT>();
  kernel<<<grid, Path::kThreads, 0, stream>>>(
      static_cast<const XT*>(a.x), a.expert_offsets, Q4SourceOf(a), static_cast<const BT*>(a.bias),
      static_cast<OT*>(a.out), static_cast<int>(a.m), static_cast<int>(a.k), static_cast<int>(a.n),
      a.num_experts, a.error_flags);
  return cudaGetLastError();
}

template <typename Path, typename XT, typename BT>
cudaError_t LaunchQ4ByOut(const Q4GemmArgs& a, int num_sms, cudaStream_t stream) {
  return a.out_dtype == DType::kF32
             ? LaunchQ4Typed<Path, XT, BT, float>(a, num_sms, stream)
             : LaunchQ4Typed<Path, XT, BT, __nv_bfloat16>(a, num_sms, stream);
}

template <typename Path, typename XT>
cudaError_t LaunchQ4ByBias(const Q4GemmArgs& a, int num_sms, cudaStream_t stream) {
  if (a.bias == nullptr || a.bias_dtype == DType::kF32) {
    return LaunchQ4ByOut<Path, XT, float>(a, num_sms, stream);
  }
  return LaunchQ4ByOut<Path, XT, __nv_bfloat16>(a, num_sms, stream);
}

template <typename Path>
cudaError_t LaunchQ4ByDtype(const Q4GemmArgs& a, int num_sms, cudaStream_t stream) {
  return a.x_dtype == DType::kF32 ? LaunchQ4ByBias<Path, float>(a, num_sms, stream)
                                  : LaunchQ4ByBias<Path, __nv_bfloat16>(a, num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_Q4_LAUNCH_CUH_
