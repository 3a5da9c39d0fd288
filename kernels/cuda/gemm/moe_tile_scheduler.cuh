// Device-side work scheduling of the grouped expert GEMM. The host never learns how many rows
// each expert got (expert_offsets live on the device, written by the permute kernel of the same
// step), so the grid cannot be sized from them. Instead every CTA of a persistent grid derives
// the same list of work items from the offsets: expert e owns ceil(rows_e / kTileM) m-tiles,
// numbered consecutively over the experts, and each m-tile is split into n-tiles. Item i is
// (m-tile i / n_tiles, n-tile i % n_tiles); CTA b runs items b, b + grid, b + 2 grid, ...
// Neighbouring items share an expert, so the CTAs in flight at any moment read the same weights
// (one expert's [out, in] matrix stays in L2 while its m-tiles pass).
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_MOE_TILE_SCHEDULER_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_MOE_TILE_SCHEDULER_CUH_

#include <cstdint>

#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/gemm/moe_grouped_gemm.h"

namespace expertmesh::cuda::gemm_internal {

// Per-expert row ranges (clamped to [0, m], so bad offsets never index out of range) and the
// exclusive prefix of m-tile counts. Lives in shared memory.
struct MoeSchedule {
  int mtile_prefix[kMoeGroupedGemmMaxExperts + 1];
  int row_begin[kMoeGroupedGemmMaxExperts];
  int row_end[kMoeGroupedGemmMaxExperts];
};

struct MoeTile {
  int expert;
  int row_begin;  // first row of the tile
  int row_end;    // one past its last row (<= the expert's end)
  int n_begin;    // first output column
};

// Fills `s` from the offsets. Called by every thread of the CTA (warp 0 does the work, a warp
// scan over 32 experts at a time, about a microsecond for 1024 experts); ends with a barrier.
// Experts whose rows have no weight get no tiles and set kErrorMissingExpertWeight; offsets
// that do not run non-decreasingly from 0 to m set kErrorExpertOffsets. Only CTA 0 reports, so
// the flag word sees one atomic per launch. Null offsets mean one expert owning rows [0, m);
// null weights mean every expert has one.
template <int kTileM>
__device__ void BuildMoeSchedule(const int32_t* __restrict__ offsets,
                                 const void* const* __restrict__ weights, int num_experts, int m,
                                 uint32_t* error_flags, MoeSchedule& s) {
  if (threadIdx.x < 32) {
    const int lane = static_cast<int>(threadIdx.x);
    int carry = 0;
    bool bad_offsets = false;
    bool missing_weight = false;
    for (int base = 0; base < num_experts; base += 32) {
      const int e = base + lane;
      int tiles = 0;
      if (e < num_experts) {
        // No offsets: one expert with every row (a dense product through the same kernels).
        const int a = offsets != nullptr ? offsets[e] : 0;
        const int b = offsets != nullptr ? offsets[e + 1] : m;
        bad_offsets |= a > b || (e == 0 && a != 0) || (e == num_experts - 1 && b != m);
        const int begin = min(max(a, 0), m);
        int end = min(max(b, begin), m);
        if (end > begin && weights != nullptr && weights[e] == nullptr) {
          missing_weight = true;
          end = begin;
        }
        s.row_begin[e] = begin;
        s.row_end[e] = end;
        tiles = (end - begin + kTileM - 1) / kTileM;
      }
      int inclusive = tiles;
#pragma unroll
      for (int delta = 1; delta < 32; delta <<= 1) {
        const int other = __shfl_up_sync(0xffffffffu, inclusive, delta);
        if (lane >= delta) inclusive += other;
      }
      if (e < num_experts) s.mtile_prefix[e] = carry + inclusive - tiles;
      carry += __shfl_sync(0xffffffffu, inclusive, 31);
    }
    if (lane == 0) s.mtile_prefix[num_experts] = carry;
    bad_offsets = __any_sync(0xffffffffu, bad_offsets);
    missing_weight = __any_sync(0xffffffffu, missing_weight);
    if (lane == 0 && blockIdx.x == 0 && error_flags != nullptr) {
      const uint32_t bits = (bad_offsets ? kErrorExpertOffsets : 0u) |
                            (missing_weight ? kErrorMissingExpertWeight : 0u);
      if (bits != 0) atomicOr(error_flags, bits);
    }
  }
  __syncthreads();
}

// The number of work items (same on every CTA).
__device__ inline int MoeNumItems(const MoeSchedule& s, int num_experts, int n_tiles) {
  return s.mtile_prefix[num_experts] * n_tiles;
}

// Work item `item` (< MoeNumItems): the expert is the last one whose m-tile prefix is <= the
// item's m-tile (experts without tiles have equal prefixes and are skipped by taking the last).
template <int kTileM, int kTileN>
__device__ inline MoeTile LocateMoeTile(const MoeSchedule& s, int num_experts, int n_tiles,
                                        int item) {
  const int mtile = item / n_tiles;
  const int ntile = item - mtile * n_tiles;
  int lo = 0;
  int hi = num_experts - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (s.mtile_prefix[mid] <= mtile) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  MoeTile t;
  t.expert = lo;
  t.row_begin = s.row_begin[lo] + (mtile - s.mtile_prefix[lo]) * kTileM;
  t.row_end = min(t.row_begin + kTileM, s.row_end[lo]);
  t.n_begin = ntile * kTileN;
  return t;
}

// Host side: the grid of a persistent launch over kTileM x kTileN items, `ctas_per_sm` CTAs per
// SM but never more than the most work items there can be (every expert adds at most one
// partial m-tile), so decode-sized launches stay small; at least one.
template <int kTileM, int kTileN>
inline unsigned MoeGridSize(int64_t m, int64_t n, int num_experts, int num_sms, int ctas_per_sm) {
  const int64_t n_tiles = (n + kTileN - 1) / kTileN;
  const int64_t max_items = ((m + kTileM - 1) / kTileM + num_experts) * n_tiles;
  int64_t grid = static_cast<int64_t>(num_sms) * ctas_per_sm;
  if (grid > max_items) grid = max_items;
  if (grid < 1) grid = 1;
  return static_cast<unsigned>(grid);
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_MOE_TILE_SCHEDULER_CUH_
