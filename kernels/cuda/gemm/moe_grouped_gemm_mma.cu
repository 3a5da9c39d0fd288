// Grouped expert GEMM on tensor cores: bf16 operands, fp32 accumulators, mma.sync m16n8k16.
//
// Per work item (one expert's kTileM x kTileN output tile) the CTA streams k-tiles of 64 through
// a kStages-deep cp.async pipeline into shared memory, then each warp multiplies its
// kWarpM x kWarpN sub-tile with fragments loaded by ldmatrix. Rows past the expert's end,
// columns past out_features and k past in_features are zero-filled by cp.async (src-size 0), so
// partial tiles need no special code; only the stores are masked.
//
// Shared-memory tiles are rows of 64 bf16 (128 bytes = 8 chunks of 16 bytes) with chunk c of
// row r stored at chunk c ^ (r & 7): the 8 rows one ldmatrix phase reads then fall on 8
// different chunk positions, so neither the cp.async stores nor the ldmatrix loads conflict.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): A (16x16, row-major) is 4 registers:
// {rows 0-7, k 0-7}, {rows 8-15, k 0-7}, {rows 0-7, k 8-15}, {rows 8-15, k 8-15}, each holding
// row lane/4, columns 2*(lane%4)+{0,1} -- exactly what ldmatrix.x4 returns for 8x8 matrices
// addressed in that order. B (16x8, "col") is 2 registers: {k 0-7}, {k 8-15} of column lane/4,
// rows 2*(lane%4)+{0,1}: ldmatrix (non-transposed) of W's rows, since W is [n, k] with k
// contiguous. C: c0,c1 at row lane/4, columns 2*(lane%4)+{0,1}; c2,c3 at row lane/4 + 8.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/mma_util.cuh"
#include "kernels/cuda/gemm/moe_grouped_gemm_internal.h"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

template <int kTileM_, int kTileN_, int kWarpsM_, int kWarpsN_, int kStages_, int kCtasPerSm_>
struct MmaConfig : MmaTiling<kTileM_, kTileN_, 64, kWarpsM_, kWarpsN_, kStages_, kCtasPerSm_> {
  using T = MmaTiling<kTileM_, kTileN_, 64, kWarpsM_, kWarpsN_, kStages_, kCtasPerSm_>;
  static constexpr int kRowBytes = T::kTileK * 2;  // 128: one swizzled smem row
  static constexpr int kABytes = T::kTileM * kRowBytes;
  static constexpr int kStageBytes = (T::kTileM + T::kTileN) * kRowBytes;
  static constexpr int kSmemBytes = T::kStages * kStageBytes;
  static_assert((T::kTileM * 8) % T::kThreads == 0 && (T::kTileN * 8) % T::kThreads == 0,
                "every thread copies the same number of 16-byte chunks");
};

// Prefill: 8 warps of 64x32, 96 KB of stages, two CTAs per SM.
using LargeConfig = MmaConfig<128, 128, 2, 4, 3, 2>;
// Decode-sized groups (a few rows per expert): 4 warps of 32x32, 4 stages of mostly weights in
// flight to cover DRAM latency, 80 KB, two CTAs per SM.
using SmallConfig = MmaConfig<32, 128, 1, 4, 4, 2>;

template <typename Cfg, bool kOutF32>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kCtasPerSm)
    MoeGemmMmaKernel(const __nv_bfloat16* __restrict__ x, const int32_t* __restrict__ offsets,
                     const void* const* __restrict__ weights, void* __restrict__ out, int m, int k,
                     int n, int num_experts, uint32_t* error_flags) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ MoeSchedule schedule;
  BuildMoeSchedule<Cfg::kTileM>(offsets, weights, num_experts, m, error_flags, schedule);

  const int n_tiles = (n + Cfg::kTileN - 1) / Cfg::kTileN;
  const int num_items = MoeNumItems(schedule, num_experts, n_tiles);
  const int k_tiles = (k + Cfg::kTileK - 1) / Cfg::kTileK;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int warp_m = warp / Cfg::kWarpsN;
  const int warp_n = warp % Cfg::kWarpsN;
  const bool n_even = (n & 1) == 0;
  const uint32_t smem_base = SmemAddress(smem);

  for (int item = static_cast<int>(blockIdx.x); item < num_items;
       item += static_cast<int>(gridDim.x)) {
    const MoeTile tile =
        LocateMoeTile<Cfg::kTileM, Cfg::kTileN>(schedule, num_experts, n_tiles, item);
    const __nv_bfloat16* w = static_cast<const __nv_bfloat16*>(weights[tile.expert]);
    auto load_stage = [&](int stage, int kt) {
      const uint32_t a = smem_base + stage * Cfg::kStageBytes;
      LoadTile<Cfg::kTileM, Cfg::kThreads>(a, x, tile.row_begin, tile.row_end, kt * Cfg::kTileK, k);
      LoadTile<Cfg::kTileN, Cfg::kThreads>(a + Cfg::kABytes, w, tile.n_begin, n, kt * Cfg::kTileK,
                                           k);
    };

    float acc[Cfg::kMi][Cfg::kNi][4];
    ZeroAccumulators(acc);
    PipelinePrologue<Cfg::kStages>(k_tiles, load_stage);
    for (int kt = 0; kt < k_tiles; ++kt) {
      PipelineAdvance<Cfg::kStages>(kt, k_tiles, load_stage);
      const uint32_t a_tile = smem_base + (kt % Cfg::kStages) * Cfg::kStageBytes;
      WarpTileMma<Cfg, MmaOperands::kBf16>(acc, a_tile, a_tile + Cfg::kABytes, warp_m, warp_n,
                                           lane);
    }
    PipelineDrain();
    StoreAccumulators<Cfg, kOutF32>(out, acc, tile.row_begin + warp_m * Cfg::kWarpM + (lane >> 2),
                                    tile.n_begin + warp_n * Cfg::kWarpN + (lane & 3) * 2,
                                    tile.row_end, n, n_even);
  }
}

template <typename Cfg, bool kOutF32>
cudaError_t LaunchWith(const MoeGroupedGemmArgs& a, int num_sms, cudaStream_t stream) {
  auto* kernel = &MoeGemmMmaKernel<Cfg, kOutF32>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
  if (err != cudaSuccess) return err;
  const unsigned grid = MoeGridSize<Cfg::kTileM, Cfg::kTileN>(a.m, a.out_features, a.num_experts,
                                                              num_sms, Cfg::kCtasPerSm);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
      static_cast<const __nv_bfloat16*>(a.x), a.expert_offsets, a.weights, a.out,
      static_cast<int>(a.m), static_cast<int>(a.in_features), static_cast<int>(a.out_features),
      a.num_experts, a.error_flags);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchMoeGemmMma(const MoeGroupedGemmArgs& args, MmaTile tile, int num_sms,
                             cudaStream_t stream) {
  const bool f32 = args.out_dtype == DType::kF32;
  if (tile == MmaTile::kLarge) {
    return f32 ? LaunchWith<LargeConfig, true>(args, num_sms, stream)
               : LaunchWith<LargeConfig, false>(args, num_sms, stream);
  }
  return f32 ? LaunchWith<SmallConfig, true>(args, num_sms, stream)
             : LaunchWith<SmallConfig, false>(args, num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
