// Host-side launch of the fp8 kernels with one thread per output element's worth of SIMT work
// (fp8_gemm_simt.cu, fp8_gemv.cu): the persistent grid on the grouped GEMM's schedule and the
// dispatch on x's, the bias's and out's dtypes (f32 or bf16; no bias launches the f32 one).
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_FP8_LAUNCH_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_FP8_LAUNCH_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/fp8_common.cuh"
#include "kernels/cuda/gemm/fp8_gemm.h"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"

namespace expertmesh::cuda::gemm_internal {

// `Path` names the kernel and its shape:
//   static constexpr int kTileM, kTileN;  // a work item's rows and weight rows
//   static constexpr int kThreads, kCtasPerSm;
//   template <typename XT, typename BT, typename OT> static auto Kernel();  // &kernel<XT, BT, OT>
// where every kernel takes (x, expert_offsets, Fp8Source, bias, out, m, k, n, num_experts,
// error_flags) and no dynamic shared memory.
template <typename Path, typename XT, typename BT, typename OT>
cudaError_t LaunchFp8Typed(const Fp8GemmArgs& a, int num_sms, cudaStream_t stream) {
  const unsigned grid =
      MoeGridSize<Path::kTileM, Path::kTileN>(a.m, a.n, a.num_experts, num_sms, Path::kCtasPerSm);
  auto* kernel = Path::template Kernel<XT, BT, OT>();
  kernel<<<grid, Path::kThreads, 0, stream>>>(
      static_cast<const XT*>(a.x), a.expert_offsets, SourceOf(a), static_cast<const BT*>(a.bias),
      static_cast<OT*>(a.out), static_cast<int>(a.m), static_cast<int>(a.k), static_cast<int>(a.n),
      a.num_experts, a.error_flags);
  return cudaGetLastError();
}

template <typename Path, typename XT, typename BT>
cudaError_t LaunchFp8ByOut(const Fp8GemmArgs& a, int num_sms, cudaStream_t stream) {
  return a.out_dtype == DType::kF32
             ? LaunchFp8Typed<Path, XT, BT, float>(a, num_sms, stream)
             : LaunchFp8Typed<Path, XT, BT, __nv_bfloat16>(a, num_sms, stream);
}

template <typename Path, typename XT>
cudaError_t LaunchFp8ByBias(const Fp8GemmArgs& a, int num_sms, cudaStream_t stream) {
  if (a.bias == nullptr || a.bias_dtype == DType::kF32) {
    return LaunchFp8ByOut<Path, XT, float>(a, num_sms, stream);
  }
  return LaunchFp8ByOut<Path, XT, __nv_bfloat16>(a, num_sms, stream);
}

template <typename Path>
cudaError_t LaunchFp8ByDtype(const Fp8GemmArgs& a, int num_sms, cudaStream_t stream) {
  return a.x_dtype == DType::kF32 ? LaunchFp8ByBias<Path, float>(a, num_sms, stream)
                                  : LaunchFp8ByBias<Path, __nv_bfloat16>(a, num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_FP8_LAUNCH_CUH_
