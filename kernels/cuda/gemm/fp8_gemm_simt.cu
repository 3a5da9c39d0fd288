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
#include "kernels/cuda/gemm/weight_only_launch.cuh"

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

struct Path : PersistentShape<kSimtTile, kSimtTile, kSimtThreads, kCtasPerSm> {
  template <typename XT, typename BT, typename OT>
  static auto Kernel() {
    return &Fp8SimtKernel<XT, BT, OT>;
  }
};

}  // namespace

cudaError_t LaunchFp8Simt(const Fp8GemmArgs& args, int num_sms, cudaStream_t stream) {
  return LaunchByDtype<Path>(args, SourceOf(args), num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
