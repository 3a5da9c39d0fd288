// q4 weights, fp32 SIMT: the 64x64 tile of simt_tile.cuh reading each weight as (q - zero) *
// scale (one rounding, as the CPU's dequantized reference) and, for act-order weights, each
// activation through the column order, so any shape and alignment runs. Serves exact mode (f32
// activations) beyond decode sizes, a bias with many rows, and every shape the faster paths
// refuse. Dense and grouped alike, on the grouped GEMM's device-side schedule.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/q4_common.cuh"
#include "kernels/cuda/gemm/q4_gemm_internal.h"
#include "kernels/cuda/gemm/simt_tile.cuh"
#include "kernels/cuda/gemm/weight_only_launch.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

// 79 registers a thread (ptxas, sm_90a): three 256-thread CTAs fit an SM (the persistent grid
// asks for no more than fit).
constexpr int kCtasPerSm = 3;

struct Q4Reader {
  const uint8_t* __restrict__ w;
  Q4Groups g;
  int k;
  __device__ __forceinline__ float operator()(int col, int kk) const {
    const Q4ScaleZero sz = Q4ScaleZeroAt(g, col, kk);
    return NibbleMinus(Q4ValueAt(w, k, col, kk), sz.zero) * sz.scale;
  }
};

template <typename XT, typename BT, typename OT>
__global__ void __launch_bounds__(kSimtThreads, kCtasPerSm)
    Q4SimtKernel(const XT* __restrict__ x, const int32_t* __restrict__ offsets, Q4Source src,
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
    const Q4Weight w = src.At(tile.expert);
    SimtGemmTileWith(x, Q4Reader{w.data, w.groups, k}, bias, out, tile.row_begin, tile.row_end,
                     tile.n_begin, n, k, smem, w.groups.column_order);
  }
}

struct Path : PersistentShape<kSimtTile, kSimtTile, kSimtThreads, kCtasPerSm> {
  template <typename XT, typename BT, typename OT>
  static auto Kernel() {
    return &Q4SimtKernel<XT, BT, OT>;
  }
};

}  // namespace

cudaError_t LaunchQ4Simt(const Q4GemmArgs& args, int num_sms, cudaStream_t stream) {
  return LaunchByDtype<Path>(args, SourceOf(args), num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
