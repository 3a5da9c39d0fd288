// Device helpers shared by the q4-weight kernels: unpacking nibbles to floats, the group scale and
// zero point of a run, loading a run's activations, and which weight (and groups) an expert has.
// Where a chunk or a nibble of a packed row is, and which group an element takes, is in
// q4_index.h (host and device, tested without a GPU).
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_Q4_COMMON_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_Q4_COMMON_CUH_

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/gemm/q4_gemm.h"
#include "kernels/cuda/gemm/q4_index.h"

namespace expertmesh::cuda::gemm_internal {

// The zero point of symmetric int4 as stored (kernels::kQ4SymmetricZero; that header is host
// C++ and says so too).
inline constexpr float kQ4DefaultZero = 8.0f;

// A nibble 0..15 as a float less `bias`: 2^23 + v is a float whose mantissa is v, so one OR and
// one subtraction replace an int-to-float conversion (exact: every value is a small integer).
__device__ __forceinline__ float NibbleMinus(uint32_t nibble, float bias) {
  return __uint_as_float(0x4b000000u | nibble) - (8388608.0f + bias);
}

// The 16 low (kHigh false) or high nibbles of a 16-byte chunk, each less `zero`: v[j] is byte
// j's nibble.
template <bool kHigh>
__device__ __forceinline__ void UnpackRun(const uint4& raw, float zero, float (&v)[16]) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t w = kHigh ? words[i] >> 4 : words[i];
#pragma unroll
    for (int b = 0; b < 4; ++b) v[4 * i + b] = NibbleMinus((w >> (8 * b)) & 0xfu, zero);
  }
}

struct Q4ScaleZero {
  float scale;
  float zero;
};
__device__ __forceinline__ Q4ScaleZero Q4ScaleZeroAt(const Q4Groups& g, int r, int c) {
  const int i = Q4GroupIndex(g, r, c);
  return {g.scales[i], g.zero_points != nullptr ? g.zero_points[i] : kQ4DefaultZero};
}

// Value [r][c] of a packed [*, k] weight (0..15), for the SIMT path.
__device__ __forceinline__ uint32_t Q4ValueAt(const uint8_t* __restrict__ w, int k, int r, int c) {
  const Q4Nibble at = Q4NibbleOf(k, c);
  const uint32_t b = w[static_cast<size_t>(r) * (k / 2) + at.byte];
  return at.high ? b >> 4 : b & 0xfu;
}

// 16 activations [c0, c0 + 16) of one row as floats: 16-byte loads (the row and c0 16-byte
// aligned), or, for an act-order weight, activations order[c0 + i] one by one (the order itself
// in 16-byte loads: c0 is a multiple of 16 and the device copy 256-byte aligned).
__device__ __forceinline__ void LoadRun(const __nv_bfloat16* row, const int32_t* order, int c0,
                                        float (&v)[16]) {
  if (order != nullptr) {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(row);
    const int4* o4 = reinterpret_cast<const int4*>(order + c0);  // 64-byte aligned
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int4 o = __ldg(o4 + q);
      const int cols[4] = {o.x, o.y, o.z, o.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[4 * q + i] = __uint_as_float(static_cast<uint32_t>(__ldg(r + cols[i])) << 16);
      }
    }
    return;
  }
  const uint4* q = reinterpret_cast<const uint4*>(row + c0);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint4 u = __ldg(q + h);
    const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[h * 8 + 2 * i] = __uint_as_float(words[i] << 16);
      v[h * 8 + 2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  }
}
__device__ __forceinline__ void LoadRun(const float* row, const int32_t* order, int c0,
                                        float (&v)[16]) {
  if (order != nullptr) {
    const int4* o4 = reinterpret_cast<const int4*>(order + c0);  // 64-byte aligned
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int4 o = __ldg(o4 + q);
      v[4 * q] = __ldg(row + o.x);
      v[4 * q + 1] = __ldg(row + o.y);
      v[4 * q + 2] = __ldg(row + o.z);
      v[4 * q + 3] = __ldg(row + o.w);
    }
    return;
  }
  const float4* q = reinterpret_cast<const float4*>(row + c0);
#pragma unroll
  for (int h = 0; h < 4; ++h) {
    const float4 f = __ldg(q + h);
    v[4 * h] = f.x;
    v[4 * h + 1] = f.y;
    v[4 * h + 2] = f.z;
    v[4 * h + 3] = f.w;
  }
}

// Expert e's weight and groups: from the device arrays (grouped) or the single weight (dense).
struct Q4Weight {
  const uint8_t* data;
  Q4Groups groups;
};
struct Q4Source {
  const void* const* weights;  // null: dense
  const Q4Groups* expert_groups;
  const uint8_t* weight;
  Q4Groups weight_groups;

  __device__ __forceinline__ Q4Weight At(int e) const {
    if (weights == nullptr) return {weight, weight_groups};
    return {static_cast<const uint8_t*>(weights[e]), expert_groups[e]};
  }
};

inline Q4Source SourceOf(const Q4GemmArgs& a) {
  return {a.weights, a.expert_groups, static_cast<const uint8_t*>(a.weight), a.weight_groups};
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_Q4_COMMON_CUH_
