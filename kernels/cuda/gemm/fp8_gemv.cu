// W8A16 for decode-sized products: a memory-bound stream over the fp8 weights.
//
// A work item is (expert, up to kTileM of its token rows, kTileN weight rows); a persistent grid
// walks the items of the grouped GEMM's device-side schedule (dense: one expert). Each warp owns
// two weight rows; lane l reads 16-byte chunks l, l + 32, ... of both rows (a warp reads 512
// contiguous bytes per row per step, the next step's chunks already in flight), converts the
// 16 e4m3 values in registers and multiplies each by its block scale (ChunkScalesAt handles a
// block boundary inside the chunk, so any column offset works), then accumulates against every
// token row of the item in fp32. So each fp8 byte is read once per item, and an expert with at
// most kTileM rows reads its weights exactly once. Partial sums are reduced across the warp by
// shuffles; the output (plus bias) is rounded once.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/fp8_common.cuh"
#include "kernels/cuda/gemm/fp8_gemm_internal.h"
#include "kernels/cuda/gemm/gemv_stream.cuh"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/weight_only_launch.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 2;
constexpr int kTileN = kWarps * kRowsPerWarp;          // weight rows per item
constexpr int kTileM = int{kFp8GemvMaxRowsPerExpert};  // token rows per item
constexpr int kCtasPerSm = 4;  // 128 registers a thread: four 128-thread CTAs fill an SM

// 16 activations [c0, c0 + 16) of one row as floats (16-byte loads; the row is 16-byte aligned).
__device__ __forceinline__ void LoadX16(const __nv_bfloat16* p, float (&v)[16]) {
  const uint4* q = reinterpret_cast<const uint4*>(p);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint4 u = __ldg(q + h);
    const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __nv_bfloat162 b;
      *reinterpret_cast<uint32_t*>(&b) = words[i];
      const float2 f = __bfloat1622float2(b);
      v[h * 8 + 2 * i] = f.x;
      v[h * 8 + 2 * i + 1] = f.y;
    }
  }
}
__device__ __forceinline__ void LoadX16(const float* p, float (&v)[16]) {
  const float4* q = reinterpret_cast<const float4*>(p);
#pragma unroll
  for (int h = 0; h < 4; ++h) {
    const float4 f = __ldg(q + h);
    v[4 * h] = f.x;
    v[4 * h + 1] = f.y;
    v[4 * h + 2] = f.z;
    v[4 * h + 3] = f.w;
  }
}

template <typename XT, typename BT, typename OT>
__global__ void __launch_bounds__(kThreads)
    Fp8GemvKernel(const XT* __restrict__ x, const int32_t* __restrict__ offsets, Fp8Source src,
                  const BT* __restrict__ bias, OT* __restrict__ out, int m, int k, int n,
                  int num_experts, uint32_t* error_flags) {
  __shared__ MoeSchedule schedule;
  BuildMoeSchedule<kTileM>(offsets, src.weights, num_experts, m, error_flags, schedule);
  const int n_tiles = (n + kTileN - 1) / kTileN;
  const int num_items = MoeNumItems(schedule, num_experts, n_tiles);
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int chunks = k / 16;

  for (int item = static_cast<int>(blockIdx.x); item < num_items;
       item += static_cast<int>(gridDim.x)) {
    const MoeTile tile = LocateMoeTile<kTileM, kTileN>(schedule, num_experts, n_tiles, item);
    const Fp8Weight w = src.At(tile.expert);
    const int tokens = tile.row_end - tile.row_begin;
    int rows[kRowsPerWarp];
    bool valid[kRowsPerWarp];
    const uint8_t* wrow[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      rows[rr] = tile.n_begin + warp * kRowsPerWarp + rr;
      valid[rr] = rows[rr] < n;
      wrow[rr] = w.data + static_cast<size_t>(valid[rr] ? rows[rr] : 0) * k;
    }
    float acc[kRowsPerWarp][kTileM];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
#pragma unroll
      for (int t = 0; t < kTileM; ++t) acc[rr][t] = 0.0f;
    }

    uint4 next[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      next[rr] = LoadW16(wrow[rr] + lane * 16, valid[rr] && lane < chunks);
    }
    for (int c = lane; c < chunks; c += 32) {
      uint4 raw[kRowsPerWarp];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        raw[rr] = next[rr];
        next[rr] = LoadW16(wrow[rr] + (c + 32) * 16, valid[rr] && c + 32 < chunks);
      }
      float wf[kRowsPerWarp][16];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        ChunkScales cs{0.0f, 0.0f, 16};
        if (valid[rr]) cs = ChunkScalesAt(w.scales, rows[rr], c * 16);
        DequantChunk16(raw[rr], cs, wf[rr]);
      }
#pragma unroll
      for (int t = 0; t < kTileM; ++t) {
        if (t < tokens) {
          float xv[16];
          LoadX16(x + static_cast<size_t>(tile.row_begin + t) * k + c * 16, xv);
#pragma unroll
          for (int rr = 0; rr < kRowsPerWarp; ++rr) {
#pragma unroll
            for (int i = 0; i < 16; ++i) acc[rr][t] = fmaf(xv[i], wf[rr][i], acc[rr][t]);
          }
        }
      }
    }

    StoreWarpSums(acc, rows, valid, lane, tokens, tile.row_begin, n, bias, out);
  }
}

struct Path : PersistentShape<kTileM, kTileN, kThreads, kCtasPerSm> {
  template <typename XT, typename BT, typename OT>
  static auto Kernel() {
    return &Fp8GemvKernel<XT, BT, OT>;
  }
};

}  // namespace

cudaError_t LaunchFp8Gemv(const Fp8GemmArgs& args, int num_sms, cudaStream_t stream) {
  return LaunchByDtype<Path>(args, SourceOf(args), num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
