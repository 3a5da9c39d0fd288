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
struct MmaConfig {
  static constexpr int kTileM = kTileM_;
  static constexpr int kTileN = kTileN_;
  static constexpr int kTileK = 64;
  static constexpr int kWarpsM = kWarpsM_;
  static constexpr int kWarpsN = kWarpsN_;
  static constexpr int kStages = kStages_;
  static constexpr int kCtasPerSm = kCtasPerSm_;
  static constexpr int kThreads = kWarpsM * kWarpsN * 32;
  static constexpr int kWarpM = kTileM / kWarpsM;
  static constexpr int kWarpN = kTileN / kWarpsN;
  static constexpr int kMi = kWarpM / 16;       // m16 fragments per warp
  static constexpr int kNi = kWarpN / 8;        // n8 fragments per warp
  static constexpr int kRowBytes = kTileK * 2;  // 128: one swizzled smem row
  static constexpr int kABytes = kTileM * kRowBytes;
  static constexpr int kStageBytes = (kTileM + kTileN) * kRowBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes;
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "warp tile of whole ldmatrix.x4 loads");
  static_assert((kTileM * 8) % kThreads == 0 && (kTileN * 8) % kThreads == 0,
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
#pragma unroll
    for (int i = 0; i < Cfg::kMi; ++i) {
#pragma unroll
      for (int j = 0; j < Cfg::kNi; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;
      }
    }

    // Group g of cp.async loads k-tile g (empty groups past the end keep the count uniform).
#pragma unroll
    for (int s = 0; s < Cfg::kStages - 1; ++s) {
      if (s < k_tiles) load_stage(s, s);
      CpAsyncCommit();
    }
    for (int kt = 0; kt < k_tiles; ++kt) {
      // At most kStages - 2 groups pending: group kt (this k-tile) has landed, for this thread;
      // the barrier makes it everyone's, and also tells that every warp is done with the stage
      // read in iteration kt - 1, which the prefetch below overwrites.
      CpAsyncWait<Cfg::kStages - 2>();
      __syncthreads();
      const int next = kt + Cfg::kStages - 1;
      if (next < k_tiles) load_stage(next % Cfg::kStages, next);
      CpAsyncCommit();

      const uint32_t a_tile = smem_base + (kt % Cfg::kStages) * Cfg::kStageBytes;
      const uint32_t b_tile = a_tile + Cfg::kABytes;
#pragma unroll
      for (int ks = 0; ks < Cfg::kTileK / 16; ++ks) {
        uint32_t a_frag[Cfg::kMi][4];
        uint32_t b_frag[Cfg::kNi][2];
#pragma unroll
        for (int i = 0; i < Cfg::kMi; ++i) {
          const int r = warp_m * Cfg::kWarpM + i * 16 + (lane & 15);
          LdMatrixX4(a_frag[i], a_tile + Swizzle(r, ks * 2 + (lane >> 4)));
        }
#pragma unroll
        for (int j = 0; j < Cfg::kNi / 2; ++j) {
          const int r = warp_n * Cfg::kWarpN + j * 16 + ((lane >> 4) << 3) + (lane & 7);
          uint32_t t[4];
          LdMatrixX4(t, b_tile + Swizzle(r, ks * 2 + ((lane >> 3) & 1)));
          b_frag[2 * j][0] = t[0];
          b_frag[2 * j][1] = t[1];
          b_frag[2 * j + 1][0] = t[2];
          b_frag[2 * j + 1][1] = t[3];
        }
#pragma unroll
        for (int i = 0; i < Cfg::kMi; ++i) {
#pragma unroll
          for (int j = 0; j < Cfg::kNi; ++j) MmaBf16(acc[i][j], a_frag[i], b_frag[j]);
        }
      }
    }
    // Nothing real is pending (only empty groups), but drain anyway; the barrier keeps the next
    // item's prologue from overwriting a stage another warp still reads.
    CpAsyncWait<0>();
    __syncthreads();

#pragma unroll
    for (int i = 0; i < Cfg::kMi; ++i) {
      const int row = tile.row_begin + warp_m * Cfg::kWarpM + i * 16 + (lane >> 2);
#pragma unroll
      for (int j = 0; j < Cfg::kNi; ++j) {
        const int col = tile.n_begin + warp_n * Cfg::kWarpN + j * 8 + (lane & 3) * 2;
        if (col >= n) continue;
        if (row < tile.row_end) {
          StorePair<kOutF32>(out, row, col, n, n_even, acc[i][j][0], acc[i][j][1]);
        }
        if (row + 8 < tile.row_end) {
          StorePair<kOutF32>(out, row + 8, col, n, n_even, acc[i][j][2], acc[i][j][3]);
        }
      }
    }
  }
}

template <typename Cfg, bool kOutF32>
cudaError_t LaunchWith(const MoeGroupedGemmArgs& a, int num_sms, cudaStream_t stream) {
  auto* kernel = &MoeGemmMmaKernel<Cfg, kOutF32>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
  if (err != cudaSuccess) return err;
  // Never more CTAs than the most work items there can be (every expert adds at most one
  // partial m-tile), so decode-sized launches stay small.
  const int64_t n_tiles = (a.out_features + Cfg::kTileN - 1) / Cfg::kTileN;
  const int64_t max_items = ((a.m + Cfg::kTileM - 1) / Cfg::kTileM + a.num_experts) * n_tiles;
  int64_t grid = static_cast<int64_t>(num_sms) * Cfg::kCtasPerSm;
  if (grid > max_items) grid = max_items;
  if (grid < 1) grid = 1;
  kernel<<<static_cast<unsigned>(grid), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
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
