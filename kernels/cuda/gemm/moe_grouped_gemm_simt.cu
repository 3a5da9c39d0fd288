// Grouped expert GEMM, fp32 SIMT fallback: f32 activations (exact mode) or f32 weights, and
// in_features % 8 != 0. Same device-side schedule as the tensor-core kernel, 64x64 tiles.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/gemm/moe_grouped_gemm_internal.h"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/simt_tile.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

// Resident CTAs per SM the grid is sized for (256 threads, ~21 KB of shared memory each).
constexpr int kSimtCtasPerSm = 4;

template <typename XT, typename WT, typename OT>
__global__ void __launch_bounds__(kSimtThreads)
    MoeGemmSimtKernel(const XT* __restrict__ x, const int32_t* __restrict__ offsets,
                      const void* const* __restrict__ weights, OT* __restrict__ out, int m, int k,
                      int n, int num_experts, uint32_t* error_flags) {
  __shared__ MoeSchedule schedule;
  __shared__ SimtSmem smem;
  BuildMoeSchedule<kSimtTile>(offsets, weights, num_experts, m, error_flags, schedule);
  const int n_tiles = (n + kSimtTile - 1) / kSimtTile;
  const int num_items = MoeNumItems(schedule, num_experts, n_tiles);
  for (int item = static_cast<int>(blockIdx.x); item < num_items;
       item += static_cast<int>(gridDim.x)) {
    const MoeTile tile = LocateMoeTile<kSimtTile, kSimtTile>(schedule, num_experts, n_tiles, item);
    // SimtGemmTile ends with a barrier after its last shared-memory read, so the next item's
    // first stores cannot overtake a slower warp.
    SimtGemmTile(x, static_cast<const WT*>(weights[tile.expert]),
                 static_cast<const float*>(nullptr), out, tile.row_begin, tile.row_end,
                 tile.n_begin, n, k, smem);
  }
}

template <typename XT, typename WT, typename OT>
cudaError_t Launch(const MoeGroupedGemmArgs& a, int num_sms, cudaStream_t stream) {
  const unsigned grid = MoeGridSize<kSimtTile, kSimtTile>(a.m, a.out_features, a.num_experts,
                                                          num_sms, kSimtCtasPerSm);
  MoeGemmSimtKernel<XT, WT, OT><<<grid, kSimtThreads, 0, stream>>>(
      static_cast<const XT*>(a.x), a.expert_offsets, a.weights, static_cast<OT*>(a.out),
      static_cast<int>(a.m), static_cast<int>(a.in_features), static_cast<int>(a.out_features),
      a.num_experts, a.error_flags);
  return cudaGetLastError();
}

template <typename XT, typename WT>
cudaError_t DispatchOut(const MoeGroupedGemmArgs& a, int num_sms, cudaStream_t stream) {
  return a.out_dtype == DType::kF32 ? Launch<XT, WT, float>(a, num_sms, stream)
                                    : Launch<XT, WT, __nv_bfloat16>(a, num_sms, stream);
}

template <typename XT>
cudaError_t DispatchWeight(const MoeGroupedGemmArgs& a, int num_sms, cudaStream_t stream) {
  return a.weight_dtype == DType::kF32 ? DispatchOut<XT, float>(a, num_sms, stream)
                                       : DispatchOut<XT, __nv_bfloat16>(a, num_sms, stream);
}

}  // namespace

cudaError_t LaunchMoeGemmSimt(const MoeGroupedGemmArgs& args, int num_sms, cudaStream_t stream) {
  return args.x_dtype == DType::kF32 ? DispatchWeight<float>(args, num_sms, stream)
                                     : DispatchWeight<__nv_bfloat16>(args, num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
