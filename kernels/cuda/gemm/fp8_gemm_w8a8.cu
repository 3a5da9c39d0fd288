// W8A8 for prefill-sized products, DeepSeek-V3's recipe (as DeepGEMM runs it; our own code):
//  1. QuantizeRowsKernel: each token row's 128-wide k blocks of bf16 x become e4m3 with one f32
//     scale per block (amax / 448, e4m3's largest finite value; saturating round to nearest
//     even), written to the workspace: xq [m, k] e4m3, xs [m, ceil(k / 128)] f32.
//  2. Fp8W8A8Kernel: the grouped GEMM pipeline with both operands e4m3 (kTileK = 128 bytes, so
//     the swizzled tiles and ldmatrix addressing are the bf16 kernel's, byte for byte) and
//     mma.sync m16n8k32 e4m3 with fp32 accumulation. Each 128-wide k step accumulates into
//     fresh registers, which are then added to the running sums times x's block scale (per
//     token row) and W's block scale (per weight row): the block scales never meet the tensor
//     cores, as in DeepSeek's fine-grained scaling.
// REQUIRES (checked by the launcher): every weight's column blocks are 128 wide and start at k
// multiples of 128 (blocks_128_aligned), so a k step lies in one weight scale column.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/fp8_common.cuh"
#include "kernels/cuda/gemm/fp8_gemm_internal.h"
#include "kernels/cuda/gemm/mma_util.cuh"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

constexpr float kE4m3Max = 448.0f;
constexpr int kQuantBlock = 128;

// One warp per (row, 128-wide block): 4 activations per lane.
__global__ void __launch_bounds__(256)
    QuantizeRowsKernel(const __nv_bfloat16* __restrict__ x, uint8_t* __restrict__ xq,
                       float* __restrict__ xs, int m, int k) {
  const int blocks = (k + kQuantBlock - 1) / kQuantBlock;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (unit >= static_cast<int64_t>(m) * blocks) return;
  const int row = static_cast<int>(unit / blocks);
  const int b = static_cast<int>(unit % blocks);
  const int kk = b * kQuantBlock + lane * 4;
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  const bool ok = kk < k;  // k % 16 == 0: a lane's 4 values are all in or all out
  if (ok) {
    const uint2 raw = *reinterpret_cast<const uint2*>(x + static_cast<size_t>(row) * k + kk);
    __nv_bfloat162 lo;
    __nv_bfloat162 hi;
    *reinterpret_cast<uint32_t*>(&lo) = raw.x;
    *reinterpret_cast<uint32_t*>(&hi) = raw.y;
    const float2 a = __bfloat1622float2(lo);
    const float2 c = __bfloat1622float2(hi);
    v[0] = a.x;
    v[1] = a.y;
    v[2] = c.x;
    v[3] = c.y;
  }
  float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, d));
  // An all-zero block gets scale 0 and zero bytes (its products vanish either way).
  const float scale = amax / kE4m3Max;
  const float inv = amax > 0.0f ? kE4m3Max / amax : 0.0f;
  if (ok) {
    const __nv_fp8x2_storage_t q01 =
        __nv_cvt_float2_to_fp8x2(make_float2(v[0] * inv, v[1] * inv), __NV_SATFINITE, __NV_E4M3);
    const __nv_fp8x2_storage_t q23 =
        __nv_cvt_float2_to_fp8x2(make_float2(v[2] * inv, v[3] * inv), __NV_SATFINITE, __NV_E4M3);
    *reinterpret_cast<uint32_t*>(xq + static_cast<size_t>(row) * k + kk) =
        static_cast<uint32_t>(q01) | (static_cast<uint32_t>(q23) << 16);
  }
  if (lane == 0) xs[static_cast<size_t>(row) * blocks + b] = scale;
}

// kTileK = 128: e4m3, one 128-byte swizzled row and one scale block.
struct Cfg : MmaTiling<128, 128, 128, 2, 4, 4, 1> {
  static constexpr int kABytes = kTileM * 128;
  static constexpr int kStageBytes = (kTileM + kTileN) * 128;
  static constexpr int kSmemBytes = kStages * kStageBytes;  // 128 KB: one CTA per SM
};

template <bool kOutF32>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kCtasPerSm)
    Fp8W8A8Kernel(const uint8_t* __restrict__ xq, const float* __restrict__ xs,
                  const int32_t* __restrict__ offsets, Fp8Source src, void* __restrict__ out, int m,
                  int k, int n, int num_experts, uint32_t* error_flags) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ MoeSchedule schedule;
  BuildMoeSchedule<Cfg::kTileM>(offsets, src.weights, num_experts, m, error_flags, schedule);

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
    const Fp8Weight w = src.At(tile.expert);
    auto load_stage = [&](int stage, int kt) {
      const uint32_t a = smem_base + stage * Cfg::kStageBytes;
      LoadTile<Cfg::kTileM, Cfg::kThreads>(a, xq, tile.row_begin, tile.row_end, kt * Cfg::kTileK,
                                           k);
      LoadTile<Cfg::kTileN, Cfg::kThreads>(a + Cfg::kABytes, w.data, tile.n_begin, n,
                                           kt * Cfg::kTileK, k);
    };
    // This thread's accumulator rows (token rows) and columns (weight rows): fragment i's rows
    // are row0 + 16 i + {0, 8}, fragment j's columns col0 + 8 j + {0, 1}.
    const int row0 = tile.row_begin + warp_m * Cfg::kWarpM + (lane >> 2);
    const int col0 = tile.n_begin + warp_n * Cfg::kWarpN + (lane & 3) * 2;

    float acc[Cfg::kMi][Cfg::kNi][4];
    ZeroAccumulators(acc);
    PipelinePrologue<Cfg::kStages>(k_tiles, load_stage);
    for (int kt = 0; kt < k_tiles; ++kt) {
      PipelineAdvance<Cfg::kStages>(kt, k_tiles, load_stage);
      float part[Cfg::kMi][Cfg::kNi][4];
      ZeroAccumulators(part);
      const uint32_t a_tile = smem_base + (kt % Cfg::kStages) * Cfg::kStageBytes;
      WarpTileMma<Cfg, MmaOperands::kE4m3>(part, a_tile, a_tile + Cfg::kABytes, warp_m, warp_n,
                                           lane);
      // Promotion: c0, c1 are (row 0, cols 0/1), c2, c3 (row 1, cols 0/1) of the fragment. The
      // scales are read after the products to keep registers for the fragments (they are L1
      // hits: a tile's rows and columns reuse them on every k step).
      float sb[Cfg::kNi][2];
#pragma unroll
      for (int j = 0; j < Cfg::kNi; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int col = col0 + 8 * j + h;
          sb[j][h] = col < n ? ScaleAt(w.scales, col, kt * Cfg::kTileK) : 0.0f;
        }
      }
#pragma unroll
      for (int i = 0; i < Cfg::kMi; ++i) {
        float sa[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = row0 + 16 * i + 8 * h;
          sa[h] = row < tile.row_end ? xs[static_cast<size_t>(row) * k_tiles + kt] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < Cfg::kNi; ++j) {
          acc[i][j][0] = fmaf(part[i][j][0], sa[0] * sb[j][0], acc[i][j][0]);
          acc[i][j][1] = fmaf(part[i][j][1], sa[0] * sb[j][1], acc[i][j][1]);
          acc[i][j][2] = fmaf(part[i][j][2], sa[1] * sb[j][0], acc[i][j][2]);
          acc[i][j][3] = fmaf(part[i][j][3], sa[1] * sb[j][1], acc[i][j][3]);
        }
      }
    }
    PipelineDrain();
    StoreAccumulators<Cfg, kOutF32>(out, acc, row0, col0, tile.row_end, n, n_even);
  }
}

template <bool kOutF32>
cudaError_t LaunchGemm(const Fp8GemmArgs& a, const uint8_t* xq, const float* xs, int num_sms,
                       cudaStream_t stream) {
  auto* kernel = &Fp8W8A8Kernel<kOutF32>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
  if (err != cudaSuccess) return err;
  const unsigned grid =
      MoeGridSize<Cfg::kTileM, Cfg::kTileN>(a.m, a.n, a.num_experts, num_sms, Cfg::kCtasPerSm);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
      xq, xs, a.expert_offsets, SourceOf(a), a.out, static_cast<int>(a.m), static_cast<int>(a.k),
      static_cast<int>(a.n), a.num_experts, a.error_flags);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchFp8W8A8(const Fp8GemmArgs& args, int num_sms, cudaStream_t stream) {
  const size_t m = static_cast<size_t>(args.m);
  const size_t k = static_cast<size_t>(args.k);
  auto* xq = static_cast<uint8_t*>(args.workspace);
  auto* xs = reinterpret_cast<float*>(xq + (m * k + 255) / 256 * 256);
  const int64_t units = args.m * ((args.k + kQuantBlock - 1) / kQuantBlock);
  const int64_t blocks = (units + 7) / 8;  // 8 warps per block
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  QuantizeRowsKernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(args.x), xq, xs, static_cast<int>(args.m),
      static_cast<int>(args.k));
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return args.out_dtype == DType::kF32 ? LaunchGemm<true>(args, xq, xs, num_sms, stream)
                                       : LaunchGemm<false>(args, xq, xs, num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
