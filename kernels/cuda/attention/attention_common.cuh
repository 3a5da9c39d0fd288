// Device helpers shared by the paged-attention kernels: element conversion, the batch layout
// (which sequence and rows a CTA works on, validated), block-table lookups and reductions.
#ifndef EXPERTMESH_KERNELS_CUDA_ATTENTION_ATTENTION_COMMON_CUH_
#define EXPERTMESH_KERNELS_CUDA_ATTENTION_ATTENTION_COMMON_CUH_

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/error_flags.h"

namespace expertmesh::cuda::attention {

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);  // round to nearest even, as the CPU's FloatToBf16
}

__device__ __forceinline__ void SetError(uint32_t* flags, uint32_t bit) {
  if (flags != nullptr) atomicOr(flags, bit);
}

// One sequence of the batch, read from the device tensors and checked as the CPU backend does.
struct SeqInfo {
  int64_t q_begin;  // first row of q
  int64_t q_len;
  int64_t seq_len;
  bool ok;
};

__device__ __forceinline__ SeqInfo LoadSeq(const PagedAttentionArgs& a, int64_t s) {
  SeqInfo info;
  const int64_t q0 = a.query_start[s], q1 = a.query_start[s + 1];
  info.q_begin = q0;
  info.q_len = q1 - q0;
  info.seq_len = a.seq_lens[s];
  info.ok = q0 >= 0 && q1 >= q0 && q1 <= a.num_tokens && info.seq_len >= info.q_len &&
            info.seq_len <= a.max_blocks_per_seq * a.block_size;
  return info;
}

// Whole-batch checks the per-sequence ones miss (query_start must run from 0 to num_tokens);
// done by one CTA of each launch.
__device__ __forceinline__ void CheckBatchEnds(const PagedAttentionArgs& a) {
  if (a.query_start[0] != 0 || a.query_start[a.num_seqs] != a.num_tokens) {
    SetError(a.error_flags, kErrorBlockId);
  }
}

// The cache slot (block id * block_size + offset) of position `pos` of sequence `s`; -1 (and
// the error flag) for a block id outside [0, num_blocks). The element offset of kv head h is
// (slot * kv_heads + h) * dim.
__device__ __forceinline__ int64_t CacheSlot(const PagedAttentionArgs& a, int64_t s, int64_t pos) {
  const int64_t id = a.block_tables[s * a.max_blocks_per_seq + pos / a.block_size];
  if (id < 0 || id >= a.num_blocks) {
    SetError(a.error_flags, kErrorBlockId);
    return -1;
  }
  return id * a.block_size + pos % a.block_size;
}

// Which (sequence, first row) row tile number `tile` is, when each sequence's
// q_len * group rows are cut into tiles of `rows_per_tile` in sequence order. Called by the
// whole CTA (warp 0 scans the sequences 32 at a time); sets *seq = -1 past the last tile.
// `scratch` is two ints of shared memory.
__device__ __forceinline__ void FindTile(const PagedAttentionArgs& a, int64_t group,
                                         int rows_per_tile, int64_t tile, int* scratch,
                                         int64_t* seq, int64_t* row0) {
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    if (lane == 0) scratch[0] = -1;
    __syncwarp();
    int64_t base = 0;  // tiles of the sequences before this chunk of 32
    for (int64_t s0 = 0; s0 < a.num_seqs; s0 += 32) {
      const int64_t s = s0 + lane;
      int64_t count = 0;
      if (s < a.num_seqs) {
        const int64_t q_len = static_cast<int64_t>(a.query_start[s + 1]) - a.query_start[s];
        if (q_len > 0) count = (q_len * group + rows_per_tile - 1) / rows_per_tile;
      }
      int64_t inclusive = count;
      for (int d = 1; d < 32; d <<= 1) {
        const int64_t other = __shfl_up_sync(0xffffffffu, inclusive, d);
        if (lane >= d) inclusive += other;
      }
      const int64_t exclusive = inclusive - count;
      const bool hit = tile >= base + exclusive && tile < base + inclusive;
      const unsigned ballot = __ballot_sync(0xffffffffu, hit);
      if (ballot != 0) {  // warp-uniform
        if (hit) {
          scratch[0] = static_cast<int>(s);
          scratch[1] = static_cast<int>((tile - base - exclusive) * rows_per_tile);
        }
        break;
      }
      base += __shfl_sync(0xffffffffu, inclusive, 31);
    }
  }
  __syncthreads();
  *seq = scratch[0];
  *row0 = scratch[1];
  __syncthreads();  // scratch may be reused by the caller
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// exp(x - m) for the online softmax, 0 for a masked score; m is -inf only when every score so
// far is masked, and then every x is too.
__device__ __forceinline__ float ExpShifted(float x, float m) {
  return x == -INFINITY ? 0.0f : expf(x - m);
}

}  // namespace expertmesh::cuda::attention

#endif  // EXPERTMESH_KERNELS_CUDA_ATTENTION_ATTENTION_COMMON_CUH_
