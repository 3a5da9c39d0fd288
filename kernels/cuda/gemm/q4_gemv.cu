// W4A16 for decode-sized products: a memory-bound stream over the packed 4-bit weights.
//
// A work item is (expert, up to kTileM of its token rows, kTileN weight rows); a persistent grid
// walks the items of the grouped GEMM's device-side schedule (dense: one expert). Each warp owns
// two weight rows; lane l reads 16-byte chunks l, l + 32, ... of both rows (a warp reads 512
// contiguous bytes per row per step, the next step's chunks already in flight). A chunk holds two
// runs of 16 consecutive values (q4_common.cuh), each inside one group: the nibbles are unpacked
// in registers less the run's zero point, multiplied against the run's 16 activations in fp32,
// and the run's sum is scaled once by its group scale. So each weight byte is read once per item,
// and an expert with at most kTileM rows reads its weights exactly once. Partial sums are reduced
// across the warp by shuffles; the output (plus bias) is rounded once.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/gemm/gemv_stream.cuh"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"
#include "kernels/cuda/gemm/q4_common.cuh"
#include "kernels/cuda/gemm/q4_gemm_internal.h"
#include "kernels/cuda/gemm/weight_only_launch.cuh"

namespace expertmesh::cuda::gemm_internal {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 2;
constexpr int kTileN = kWarps * kRowsPerWarp;         // weight rows per item
constexpr int kTileM = int{kQ4GemvMaxRowsPerExpert};  // token rows per item
// 156-168 registers a thread (ptxas, sm_90a): three 128-thread CTAs fit an SM. The persistent
// grid must not ask for more than fit, or a last wave of CTAs runs its items after the others.
constexpr int kCtasPerSm = 3;

template <typename XT, typename BT, typename OT>
__global__ void __launch_bounds__(kThreads, kCtasPerSm)
    Q4GemvKernel(const XT* __restrict__ x, const int32_t* __restrict__ offsets, Q4Source src,
                 const BT* __restrict__ bias, OT* __restrict__ out, int m, int k, int n,
                 int num_experts, uint32_t* error_flags) {
  __shared__ MoeSchedule schedule;
  BuildMoeSchedule<kTileM>(offsets, src.weights, num_experts, m, error_flags, schedule);
  const int n_tiles = (n + kTileN - 1) / kTileN;
  const int num_items = MoeNumItems(schedule, num_experts, n_tiles);
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int chunks = k / 32;  // 16-byte chunks per packed row
  const size_t row_bytes = static_cast<size_t>(k / 2);

  for (int item = static_cast<int>(blockIdx.x); item < num_items;
       item += static_cast<int>(gridDim.x)) {
    const MoeTile tile = LocateMoeTile<kTileM, kTileN>(schedule, num_experts, n_tiles, item);
    const Q4Weight w = src.At(tile.expert);
    const int32_t* order = w.groups.column_order;
    const int tokens = tile.row_end - tile.row_begin;
    int rows[kRowsPerWarp];
    bool valid[kRowsPerWarp];
    const uint8_t* wrow[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      rows[rr] = tile.n_begin + warp * kRowsPerWarp + rr;
      valid[rr] = rows[rr] < n;
      wrow[rr] = w.data + (valid[rr] ? rows[rr] : 0) * row_bytes;
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
      const Q4Runs runs = Q4RunsOf(k, c);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c0 = h == 0 ? runs.lo : runs.hi;
        float wv[kRowsPerWarp][16];
        float scale[kRowsPerWarp];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
          // A row past n has zero bytes and scale 0: its sums are 0 and never stored.
          Q4ScaleZero sz{0.0f, 0.0f};
          if (valid[rr]) sz = Q4ScaleZeroAt(w.groups, rows[rr], c0);
          scale[rr] = sz.scale;
          if (h == 0) {
            UnpackRun<false>(raw[rr], sz.zero, wv[rr]);
          } else {
            UnpackRun<true>(raw[rr], sz.zero, wv[rr]);
          }
        }
#pragma unroll
        for (int t = 0; t < kTileM; ++t) {
          if (t < tokens) {
            float xv[16];
            LoadRun(x + static_cast<size_t>(tile.row_begin + t) * k, order, c0, xv);
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr) {
              float p = 0.0f;
#pragma unroll
              for (int i = 0; i < 16; ++i) p = fmaf(xv[i], wv[rr][i], p);
              acc[rr][t] = fmaf(scale[rr], p, acc[rr][t]);
            }
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
    return &Q4GemvKernel<XT, BT, OT>;
  }
};

}  // namespace

cudaError_t LaunchQ4Gemv(const Q4GemmArgs& args, int num_sms, cudaStream_t stream) {
  return LaunchByDtype<Path>(args, SourceOf(args), num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal
