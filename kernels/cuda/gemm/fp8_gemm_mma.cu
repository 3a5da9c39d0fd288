// W8A16 on tensor cores, for products with many rows per expert: bf16 x times fp8 weights with
// mma.sync m16n8k16 bf16, fp32 accumulators.
//
// The bf16 grouped GEMM's pipeline (moe_grouped_gemm_mma.cu) with one change on the weight side:
// each stage copies the weight tile's e4m3 bytes (kTileN rows x 64 k, half the bytes of bf16)
// with cp.async into a plain staging area; when the stage is consumed, the CTA dequantizes it
// once into a swizzled bf16 tile, each weight as bf16(q * s) with its block's scale, and the
// warps multiply from that tile exactly as the bf16 kernel does. Device memory traffic for the
// weights is one byte per weight per m-tile; the scale lookups for a stage are issued before
// waiting for its bytes. Numerically this is the bf16-widened weight of the old load path (one
// bf16 rounding of q * s), with fp32 accumulation.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/fp8_common.cuh"
#include "kernels/cuda/gemm/fp8_gemm_internal.h"
#include "kernels/cuda/gemm/mma_util.cuh"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/weight_only_launch.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

template <int kTileM_, int kWarpsM_, int kWarpsN_, int kStages_, int kCtasPerSm_>
struct Config : MmaTiling<kTileM_, 128, 64, kWarpsM_, kWarpsN_, kStages_, kCtasPerSm_> {
  using T = MmaTiling<kTileM_, 128, 64, kWarpsM_, kWarpsN_, kStages_, kCtasPerSm_>;
  static constexpr int kABytes = T::kTileM * 128;          // bf16 x, swizzled 128-byte rows
  static constexpr int kRawBytes = T::kTileN * T::kTileK;  // e4m3 weights, plain 64-byte rows
  static constexpr int kStageBytes = kABytes + kRawBytes;
  static constexpr int kWeightTileBytes = T::kTileN * 128;  // dequantized bf16, swizzled
  static constexpr int kSmemBytes = T::kStages * kStageBytes + kWeightTileBytes;
  // 16-byte weight chunks per thread per stage (kTileN rows x 4 chunks).
  static constexpr int kChunks = T::kTileN * 4 / T::kThreads;
  static_assert((T::kTileM * 8) % T::kThreads == 0 && (T::kTileN * 4) % T::kThreads == 0,
                "even copies");
};

using LargeConfig = Config<128, 2, 4, 3, 2>;  // 88 KB of shared memory
using SmallConfig = Config<32, 1, 4, 4, 2>;   // 64 KB

template <typename Cfg, bool kOutF32>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kCtasPerSm)
    Fp8MmaKernel(const __nv_bfloat16* __restrict__ x, const int32_t* __restrict__ offsets,
                 Fp8Source src, void* __restrict__ out, int m, int k, int n, int num_experts,
                 uint32_t* error_flags) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ MoeSchedule schedule;
  BuildMoeSchedule<Cfg::kTileM>(offsets, src.weights, num_experts, m, error_flags, schedule);

  const int n_tiles = (n + Cfg::kTileN - 1) / Cfg::kTileN;
  const int num_items = MoeNumItems(schedule, num_experts, n_tiles);
  const int k_tiles = (k + Cfg::kTileK - 1) / Cfg::kTileK;
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int warp_m = warp / Cfg::kWarpsN;
  const int warp_n = warp % Cfg::kWarpsN;
  const bool n_even = (n & 1) == 0;
  const uint32_t smem_base = SmemAddress(smem);
  unsigned char* const weight_tile = smem + Cfg::kStages * Cfg::kStageBytes;
  const uint32_t b_tile = smem_base + Cfg::kStages * Cfg::kStageBytes;

  for (int item = static_cast<int>(blockIdx.x); item < num_items;
       item += static_cast<int>(gridDim.x)) {
    const MoeTile tile =
        LocateMoeTile<Cfg::kTileM, Cfg::kTileN>(schedule, num_experts, n_tiles, item);
    const Fp8Weight w = src.At(tile.expert);
    auto load_stage = [&](int stage, int kt) {
      const uint32_t a = smem_base + stage * Cfg::kStageBytes;
      LoadTile<Cfg::kTileM, Cfg::kThreads>(a, x, tile.row_begin, tile.row_end, kt * Cfg::kTileK, k);
      const uint32_t raw = a + Cfg::kABytes;
#pragma unroll
      for (int j = 0; j < Cfg::kChunks; ++j) {
        const int i = tid + j * Cfg::kThreads;
        const int r = i >> 2;
        const int c = i & 3;
        const int row = tile.n_begin + r;
        const int kk = kt * Cfg::kTileK + c * 16;
        const bool ok = row < n && kk < k;
        const uint8_t* p = ok ? w.data + static_cast<size_t>(row) * k + kk : w.data;
        CpAsync16(raw + r * Cfg::kTileK + c * 16, p, ok ? 16 : 0);
      }
    };

    float acc[Cfg::kMi][Cfg::kNi][4];
    ZeroAccumulators(acc);
    PipelinePrologue<Cfg::kStages>(k_tiles, load_stage);
    for (int kt = 0; kt < k_tiles; ++kt) {
      // This thread's chunks' scales, fetched while the stage's bytes are still in flight.
      ChunkScales cs[Cfg::kChunks];
#pragma unroll
      for (int j = 0; j < Cfg::kChunks; ++j) {
        const int i = tid + j * Cfg::kThreads;
        const int row = tile.n_begin + (i >> 2);
        const int kk = kt * Cfg::kTileK + (i & 3) * 16;
        cs[j] = ChunkScales{0.0f, 0.0f, 16};
        if (row < n && kk < k) cs[j] = ChunkScalesAt(w.scales, row, kk);
      }
      // As the bf16 kernel; here the barrier also tells that every warp is done with the
      // dequantized tile of the previous iteration, which is overwritten below.
      PipelineAdvance<Cfg::kStages>(kt, k_tiles, load_stage);

      const unsigned char* raw = smem + (kt % Cfg::kStages) * Cfg::kStageBytes + Cfg::kABytes;
#pragma unroll
      for (int j = 0; j < Cfg::kChunks; ++j) {
        const int i = tid + j * Cfg::kThreads;
        const int r = i >> 2;
        const int c = i & 3;
        const uint4 q = *reinterpret_cast<const uint4*>(raw + r * Cfg::kTileK + c * 16);
        float f[16];
        DequantChunk16(q, cs[j], f);
        uint4 lo;
        uint4 hi;
        PackBf16x16(f, 1.0f, lo, hi);
        *reinterpret_cast<uint4*>(weight_tile + Swizzle(r, 2 * c)) = lo;
        *reinterpret_cast<uint4*>(weight_tile + Swizzle(r, 2 * c + 1)) = hi;
      }
      __syncthreads();

      const uint32_t a_tile = smem_base + (kt % Cfg::kStages) * Cfg::kStageBytes;
      WarpTileMma<Cfg, MmaOperands::kBf16>(acc, a_tile, b_tile, warp_m, warp_n, lane);
    }
    PipelineDrain();
    StoreAccumulators<Cfg, kOutF32>(out, acc, tile.row_begin + warp_m * Cfg::kWarpM + (lane >> 2),
                                    tile.n_begin + warp_n * Cfg::kWarpN + (lane & 3) * 2,
                                    tile.row_end, n, n_even);
  }
}

struct MmaPath {
  template <typename Cfg, bool kOutF32>
  static auto Kernel() {
    return &Fp8MmaKernel<Cfg, kOutF32>;
  }
};

}  // namespace

cudaError_t LaunchFp8MmaW8A16(const Fp8GemmArgs& args, bool small_tile, int num_sms,
                              cudaStream_t stream) {
  return LaunchMmaByTile<MmaPath, LargeConfig, SmallConfig>(args, SourceOf(args), small_tile,
                                                            num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
