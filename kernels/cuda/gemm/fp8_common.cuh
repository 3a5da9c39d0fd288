// Device helpers shared by the fp8-weight kernels: e4m3 -> f32 conversion, block-scale lookup,
// dequantizing a 16-byte chunk of a weight row, and which weight (and scales) an expert has.
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_FP8_COMMON_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_FP8_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/gemm/fp8_gemm.h"

namespace expertmesh::cuda::gemm_internal {

// Two e4m3 bytes (low byte first) -> two floats, exactly (every e4m3 value, subnormals
// included, is an f16 value; on sm_89+ this is one cvt.rn.f16x2.e4m3x2).
__device__ __forceinline__ float2 E4m3x2ToFloat2(uint16_t two) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two), __NV_E4M3);
  return __half22float2(__half2(h));
}

__device__ __forceinline__ float E4m3ToFloat(uint8_t b) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3);
  return __half2float(__half(h));
}

// The scale of weight element [r][c].
__device__ __forceinline__ float ScaleAt(const Fp8Scales& s, int r, int c) {
  return s.scales[((r + s.row_offset) / s.block_rows) * s.ld + (c + s.col_offset) / s.block_cols];
}

// The scales of the 16 elements [r][c0, c0 + 16): elements before `split` take s0, the rest s1
// (split = 16 when the chunk lies in one block). REQUIRES: block_cols >= 16 (at most one block
// boundary inside a chunk); c0 + 15 < the weight's columns when split < 16 is possible.
struct ChunkScales {
  float s0;
  float s1;
  int split;
};
__device__ __forceinline__ ChunkScales ChunkScalesAt(const Fp8Scales& s, int r, int c0) {
  const int row = ((r + s.row_offset) / s.block_rows) * s.ld;
  const int b0 = (c0 + s.col_offset) / s.block_cols;
  ChunkScales cs;
  cs.s0 = s.scales[row + b0];
  cs.split = (b0 + 1) * s.block_cols - s.col_offset - c0;  // first column of the next block
  cs.s1 = cs.split < 16 ? s.scales[row + b0 + 1] : cs.s0;
  return cs;
}

// 16 e4m3 bytes -> 16 floats, each its value times its scale (q * s rounded once, as the CPU's
// dequantized reference).
__device__ __forceinline__ void DequantChunk16(const uint4& raw, const ChunkScales& cs,
                                               float (&w)[16]) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 lo = E4m3x2ToFloat2(static_cast<uint16_t>(words[i] & 0xffffu));
    const float2 hi = E4m3x2ToFloat2(static_cast<uint16_t>(words[i] >> 16));
    const int j = 4 * i;
    w[j + 0] = lo.x * (j + 0 < cs.split ? cs.s0 : cs.s1);
    w[j + 1] = lo.y * (j + 1 < cs.split ? cs.s0 : cs.s1);
    w[j + 2] = hi.x * (j + 2 < cs.split ? cs.s0 : cs.s1);
    w[j + 3] = hi.y * (j + 3 < cs.split ? cs.s0 : cs.s1);
  }
}

// Expert e's weight and scales: from the device arrays (grouped) or the single weight (dense).
struct Fp8Weight {
  const uint8_t* data;
  Fp8Scales scales;
};
struct Fp8Source {
  const void* const* weights;  // null: dense
  const Fp8Scales* expert_scales;
  const uint8_t* weight;
  Fp8Scales weight_scales;

  __device__ __forceinline__ Fp8Weight At(int e) const {
    if (weights == nullptr) return {weight, weight_scales};
    return {static_cast<const uint8_t*>(weights[e]), expert_scales[e]};
  }
};

inline Fp8Source SourceOf(const Fp8GemmArgs& a) {
  return {a.weights, a.expert_scales, static_cast<const uint8_t*>(a.weight), a.weight_scales};
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_FP8_COMMON_CUH_
