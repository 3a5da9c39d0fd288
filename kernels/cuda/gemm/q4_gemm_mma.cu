// W4A16 on tensor cores, for products with many rows per expert: bf16 x times packed 4-bit
// weights with mma.sync m16n8k16 bf16, fp32 accumulators.
//
// The fp8 W8A16 kernel's shape (fp8_gemm_mma.cu) with a 4-bit weight side: a k step is 64
// values, which is exactly one 64-wide unit of the packed layout (32 bytes per weight row; the
// last step of a row of an odd multiple of 32 values is its 32-wide unit, 16 bytes). Each stage
// copies the weight tile's packed bytes (kTileN rows x 32 bytes, a quarter of bf16's) with
// cp.async into a plain staging area; when the stage is consumed, the CTA dequantizes it once
// into a swizzled bf16 tile, each weight as bf16((q - zero) * scale) with its group's scale and
// zero point, and the warps multiply from that tile exactly as the bf16 kernel does. Device
// memory traffic for the weights is half a byte per weight per m-tile; the scale and zero lookups
// for a stage are issued before waiting for its bytes. Numerically this is the bf16-widened
// weight (one bf16 rounding of (q - zero) * scale), with fp32 accumulation.
//
// Act-order weights (a column order) load their x tile by gathering: each 16-byte chunk of the
// tile is eight activations order[kk .. kk + 7] read one by one and stored to shared memory (the
// pipeline's barrier orders those ordinary stores like the cp.async ones).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/mma_util.cuh"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/q4_common.cuh"
#include "kernels/cuda/gemm/q4_gemm_internal.h"
#include "kernels/cuda/gemm/weight_only_launch.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

template <int kTileM_, int kWarpsM_, int kWarpsN_, int kStages_, int kCtasPerSm_>
struct Config : MmaTiling<kTileM_, 128, 64, kWarpsM_, kWarpsN_, kStages_, kCtasPerSm_> {
  using T = MmaTiling<kTileM_, 128, 64, kWarpsM_, kWarpsN_, kStages_, kCtasPerSm_>;
  static constexpr int kABytes = T::kTileM * 128;  // bf16 x, swizzled 128-byte rows
  static constexpr int kRawRowBytes = T::kTileK / 2;
  static constexpr int kRawBytes = T::kTileN * kRawRowBytes;  // packed weights, 32-byte rows
  static constexpr int kStageBytes = kABytes + kRawBytes;
  static constexpr int kWeightTileBytes = T::kTileN * 128;  // dequantized bf16, swizzled
  static constexpr int kSmemBytes = T::kStages * kStageBytes + kWeightTileBytes;
  // 16-byte weight chunks per thread per stage (kTileN rows x 2 chunks).
  static constexpr int kChunks = T::kTileN * 2 / T::kThreads;
  static_assert((T::kTileM * 8) % T::kThreads == 0 && (T::kTileN * 2) % T::kThreads == 0,
                "even copies");
};

using LargeConfig = Config<128, 2, 4, 3, 2>;  // 76 KB of shared memory
using SmallConfig = Config<32, 1, 4, 4, 2>;   // 48 KB

// The x tile of an act-order weight: rows [row0, row0 + kRows) x activations order[k0 + j],
// j < 64, into the swizzled tile at `tile`; rows >= row_end and columns >= k are zeros.
template <int kRows, int kThreads>
__device__ __forceinline__ void GatherTile(unsigned char* tile, const __nv_bfloat16* __restrict__ x,
                                           const int32_t* __restrict__ order, int row0, int row_end,
                                           int k0, int k) {
  const uint16_t* xs = reinterpret_cast<const uint16_t*>(x);
#pragma unroll
  for (int j = 0; j < (kRows * 8) / kThreads; ++j) {
    const int i = static_cast<int>(threadIdx.x) + j * kThreads;
    const int r = i >> 3;
    const int c = i & 7;
    const int row = row0 + r;
    const int kk = k0 + c * 8;
    uint32_t v[4] = {0u, 0u, 0u, 0u};
    if (row < row_end && kk < k) {  // k % 32 == 0: a chunk is all in or all out
      const uint16_t* xr = xs + static_cast<size_t>(row) * k;
      const int4 o0 = __ldg(reinterpret_cast<const int4*>(order + kk));
      const int4 o1 = __ldg(reinterpret_cast<const int4*>(order + kk + 4));
      v[0] = __ldg(xr + o0.x) | static_cast<uint32_t>(__ldg(xr + o0.y)) << 16;
      v[1] = __ldg(xr + o0.z) | static_cast<uint32_t>(__ldg(xr + o0.w)) << 16;
      v[2] = __ldg(xr + o1.x) | static_cast<uint32_t>(__ldg(xr + o1.y)) << 16;
      v[3] = __ldg(xr + o1.z) | static_cast<uint32_t>(__ldg(xr + o1.w)) << 16;
    }
    *reinterpret_cast<uint4*>(tile + Swizzle(r, c)) = make_uint4(v[0], v[1], v[2], v[3]);
  }
}

template <typename Cfg, bool kOutF32>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kCtasPerSm)
    Q4MmaKernel(const __nv_bfloat16* __restrict__ x, const int32_t* __restrict__ offsets,
                Q4Source src, void* __restrict__ out, int m, int k, int n, int num_experts,
                uint32_t* error_flags) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ MoeSchedule schedule;
  BuildMoeSchedule<Cfg::kTileM>(offsets, src.weights, num_experts, m, error_flags, schedule);

  const int n_tiles = (n + Cfg::kTileN - 1) / Cfg::kTileN;
  const int num_items = MoeNumItems(schedule, num_experts, n_tiles);
  const int k_tiles = (k + Cfg::kTileK - 1) / Cfg::kTileK;
  const int row_bytes = k / 2;
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
    const Q4Weight w = src.At(tile.expert);
    const int32_t* order = w.groups.column_order;
    auto load_stage = [&](int stage, int kt) {
      const uint32_t a = smem_base + stage * Cfg::kStageBytes;
      if (order == nullptr) {
        LoadTile<Cfg::kTileM, Cfg::kThreads>(a, x, tile.row_begin, tile.row_end, kt * Cfg::kTileK,
                                             k);
      } else {
        GatherTile<Cfg::kTileM, Cfg::kThreads>(smem + stage * Cfg::kStageBytes, x, order,
                                               tile.row_begin, tile.row_end, kt * Cfg::kTileK, k);
      }
      const uint32_t raw = a + Cfg::kABytes;
#pragma unroll
      for (int j = 0; j < Cfg::kChunks; ++j) {
        const int i = tid + j * Cfg::kThreads;
        const int r = i >> 1;
        const int c = i & 1;
        const int row = tile.n_begin + r;
        const int byte = kt * Cfg::kRawRowBytes + c * 16;
        const bool ok = row < n && byte < row_bytes;
        const uint8_t* p = ok ? w.data + static_cast<size_t>(row) * row_bytes + byte : w.data;
        CpAsync16(raw + r * Cfg::kRawRowBytes + c * 16, p, ok ? 16 : 0);
      }
    };

    float acc[Cfg::kMi][Cfg::kNi][4];
    ZeroAccumulators(acc);
    PipelinePrologue<Cfg::kStages>(k_tiles, load_stage);
    for (int kt = 0; kt < k_tiles; ++kt) {
      const int k0 = kt * Cfg::kTileK;
      // The last k step of a row of an odd multiple of 32 values is a 32-wide unit: one chunk
      // whose low nibbles are values 0..15 and high nibbles 16..31; the tile's columns 32..63
      // are zeros (as x's are). Q4StepRunsOf (q4_index.h) says which columns a chunk holds.
      const bool narrow = k - k0 < Cfg::kTileK;
      // This thread's chunks' runs (first column within the tile) and their groups, fetched
      // while the stage's bytes are still in flight.
      int lo[Cfg::kChunks];
      int hi[Cfg::kChunks];
      bool valid[Cfg::kChunks];
      Q4ScaleZero sz_lo[Cfg::kChunks];
      Q4ScaleZero sz_hi[Cfg::kChunks];
#pragma unroll
      for (int j = 0; j < Cfg::kChunks; ++j) {
        const int i = tid + j * Cfg::kThreads;
        const int c = i & 1;
        const int row = tile.n_begin + (i >> 1);
        const Q4Runs runs = Q4StepRunsOf(narrow, c);
        lo[j] = runs.lo;
        hi[j] = runs.hi;
        valid[j] = row < n && !(narrow && c == 1);
        sz_lo[j] = Q4ScaleZero{0.0f, 0.0f};
        sz_hi[j] = sz_lo[j];
        if (valid[j]) {
          sz_lo[j] = Q4ScaleZeroAt(w.groups, row, k0 + lo[j]);
          sz_hi[j] = Q4ScaleZeroAt(w.groups, row, k0 + hi[j]);
        }
      }
      // As the bf16 kernel; here the barrier also tells that every warp is done with the
      // dequantized tile of the previous iteration, which is overwritten below.
      PipelineAdvance<Cfg::kStages>(kt, k_tiles, load_stage);

      const unsigned char* raw = smem + (kt % Cfg::kStages) * Cfg::kStageBytes + Cfg::kABytes;
#pragma unroll
      for (int j = 0; j < Cfg::kChunks; ++j) {
        const int i = tid + j * Cfg::kThreads;
        const int r = i >> 1;
        const int c = i & 1;
        uint4 a0 = make_uint4(0, 0, 0, 0), a1 = a0, b0 = a0, b1 = a0;
        if (valid[j]) {
          const uint4 q = *reinterpret_cast<const uint4*>(raw + r * Cfg::kRawRowBytes + c * 16);
          float f[16];
          UnpackRun<false>(q, sz_lo[j].zero, f);
          PackBf16x16(f, sz_lo[j].scale, a0, a1);
          UnpackRun<true>(q, sz_hi[j].zero, f);
          PackBf16x16(f, sz_hi[j].scale, b0, b1);
        }
        // Runs of 16 values are two 8-value chunks of the swizzled bf16 row each; an invalid
        // chunk writes zeros where its runs would go (rows past n, the narrow step's 32..63).
        *reinterpret_cast<uint4*>(weight_tile + Swizzle(r, lo[j] / 8)) = a0;
        *reinterpret_cast<uint4*>(weight_tile + Swizzle(r, lo[j] / 8 + 1)) = a1;
        *reinterpret_cast<uint4*>(weight_tile + Swizzle(r, hi[j] / 8)) = b0;
        *reinterpret_cast<uint4*>(weight_tile + Swizzle(r, hi[j] / 8 + 1)) = b1;
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
    return &Q4MmaKernel<Cfg, kOutF32>;
  }
};

}  // namespace

cudaError_t LaunchQ4Mma(const Q4GemmArgs& args, bool small_tile, int num_sms, cudaStream_t stream) {
  return LaunchMmaByTile<MmaPath, LargeConfig, SmallConfig>(args, SourceOf(args), small_tile,
                                                            num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
