// fp8 weights, fp32 SIMT: the 64x64 tile of simt_tile.cuh reading each weight as q * s (one
// rounding, as the CPU's dequantized reference), so any shape, block shape, offset and alignment
// runs. Serves exact mode (f32 activations) beyond decode sizes and every shape the faster
// paths refuse. Dense and grouped alike, on the grouped GEMM's device-side schedule.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/gemm/fp8_common.cuh"
#include "kernels/cuda/gemm/fp8_gemm_internal.h"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/simt_tile.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

constexpr int kCtasPerSm = 4;

struct Fp8Reader {
  const uint8_t* __restrict__ w;
  Fp8Scales s;
  int k;
  __device__ __forceinline__ float operator()(int col, int kk) const {
    return E4m3ToFloat(w[static_cast<size_t>(col) * k + kk]) * ScaleAt(s, col, kk);
  }
};

template <typename XT, typename BT, typename OT>
__global__ void __launch_bounds__(kSimtThreads)
    Fp8SimtKernel(const XT* __restrict__ x, const int32_t* __restrict__ offsets, Fp8Source src,
                  const BT* __restrict__ bias, OT* __restrict__ out, int m, int k, int n,
                  int num_experts, uint32_t* error_flags) {
  __shared__ MoeSchedule schedule;
  __shared__ SimtSmem smem;
  BuildMoeSchedule<kSimtTile>(offsets, src.weights, num_experts, m, error_flags, schedule);
  const int n_tiles = (n + kSimtTile - 1) / kSimtTile;
  const int num_items = MoeNumItems(schedule, num_experts, n_tiles);
  for (int item = static_cast<int>(blockIdx.x); item < num_items;
       item += static_cast<int>(gridDim.x)) {
    const MoeTile tile = LocateMoeTile<kSimtTile, kSimtTile>(schedule, num_experts, n_tiles, item);
    const Fp8Weight w = src.At(tile.expert);
    SimtGemmTileWith(x, Fp8Reader{w.data, w.scales, k}, bias, out, tile.row_begin, tile.row_end,
                     tile.n_begin, n, k, smem);
  }
}

template <typename XT, typename BT, typename OT>
cudaError_t Launch(const Fp8GemmArgs& a, int num_sms, cudaStream_t stream) {
  const int64_t n_tiles = (a.n + kSimtTile - 1) / kSimtTile;
  const int64_t max_items = ((a.m + kSimtTile - 1) / kSimtTile + a.num_experts) * n_tiles;
  int64_t grid = static_cast<int64_t>(num_sms) * kCtasPerSm;
  if (grid > max_items) grid = max_items;
  if (grid < 1) grid = 1;
  Fp8SimtKernel<XT, BT, OT><<<static_cast<unsigned>(grid), kSimtThreads, 0, stream>>>(
      static_cast<const XT*>(a.x), a.expert_offsets, SourceOf(a), static_cast<const BT*>(a.bias),
      static_cast<OT*>(a.out), static_cast<int>(a.m), static_cast<int>(a.k), static_cast<int>(a.n),
      a.num_experts, a.error_flags);
  return cudaGetLastError();
}

template <typename XT, typename BT>
cudaError_t DispatchOut(const Fp8GemmArgs& a, int num_sms, cudaStream_t stream) {
  return a.out_dtype == DType::kF32 ? Launch<XT, BT, float>(a, num_sms, stream)
                                    : Launch<XT, BT, __nv_bfloat16>(a, num_sms, stream);
}

template <typename XT>
cudaError_t DispatchBias(const Fp8GemmArgs& a, int num_sms, cudaStream_t stream) {
  if (a.bias == nullptr || a.bias_dtype == DType::kF32) {
    return DispatchOut<XT, float>(a, num_sms, stream);
  }
  return DispatchOut<XT, __nv_bfloat16>(a, num_sms, stream);
}

}  // namespace

cudaError_t LaunchFp8Simt(const Fp8GemmArgs& args, int num_sms, cudaStream_t stream) {
  return args.x_dtype == DType::kF32 ? DispatchBias<float>(args, num_sms, stream)
                                     : DispatchBias<__nv_bfloat16>(args, num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
