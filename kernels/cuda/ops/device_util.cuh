// Device-side helpers the op kernels share: bf16/f16 conversions bit-identical to common/dtype.h
// (so GPU and CPU round the same way, NaNs included), typed loads/stores through fp32, and
// warp/block reductions in a fixed order (deterministic results). For .cu files only.
#ifndef EXPERTMESH_KERNELS_CUDA_OPS_DEVICE_UTIL_CUH_
#define EXPERTMESH_KERNELS_CUDA_OPS_DEVICE_UTIL_CUH_

#include <cuda_fp16.h>

#include <cstdint>

namespace expertmesh::cuda::ops {

__device__ __forceinline__ float Bf16Bits2Float(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// Round to nearest even; a NaN stays a (quiet) NaN, as FloatToBf16 in common/dtype.h.
__device__ __forceinline__ uint16_t Float2Bf16Bits(float value) {
  const uint32_t bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

__device__ __forceinline__ float F16Bits2Float(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

// Storage types: float for f32, these tags for the 16-bit formats (raw bits in memory).
struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(Bf16 v) { return Bf16Bits2Float(v.bits); }
__device__ __forceinline__ float ToFloat(F16 v) { return F16Bits2Float(v.bits); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ Bf16 FromFloat<Bf16>(float v) {
  return Bf16{Float2Bf16Bits(v)};
}

// fp32 -> T -> fp32: what materialising an intermediate in T does.
template <typename T>
__device__ __forceinline__ float RoundTo(float v) {
  return ToFloat(FromFloat<T>(v));
}

template <typename T>
__device__ __forceinline__ float Load(const void* base, int64_t i) {
  return ToFloat(static_cast<const T*>(base)[i]);
}
template <typename T>
__device__ __forceinline__ void Store(void* base, int64_t i, float v) {
  static_cast<T*>(base)[i] = FromFloat<T>(v);
}

template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T WarpMax(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
// `scratch` holds 32 values; the call ends with a barrier, so scratch may be reused at once.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < warps ? scratch[lane] : T(0);
  total = WarpSum(total);
  return total;
}

template <typename T>
__device__ __forceinline__ T BlockMax(T v, T* scratch, T lowest) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < warps ? scratch[lane] : lowest;
  return WarpMax(total);
}

// Four consecutive elements starting at element i (i a multiple of 4, the base 16-byte aligned):
// one 16-byte load for f32, one 8-byte load for the 16-bit formats.
__device__ __forceinline__ void Load4(const float* p, int64_t i, float v[4]) {
  const float4 q = *reinterpret_cast<const float4*>(p + i);
  v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
__device__ __forceinline__ void Load4(const Bf16* p, int64_t i, float v[4]) {
  const uint2 q = *reinterpret_cast<const uint2*>(p + i);
  v[0] = __uint_as_float(q.x << 16), v[1] = __uint_as_float(q.x & 0xffff0000u);
  v[2] = __uint_as_float(q.y << 16), v[3] = __uint_as_float(q.y & 0xffff0000u);
}
__device__ __forceinline__ void Store4(float* p, int64_t i, const float v[4]) {
  *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void Store4(Bf16* p, int64_t i, const float v[4]) {
  uint2 q;
  q.x = static_cast<uint32_t>(Float2Bf16Bits(v[0])) |
        (static_cast<uint32_t>(Float2Bf16Bits(v[1])) << 16);
  q.y = static_cast<uint32_t>(Float2Bf16Bits(v[2])) |
        (static_cast<uint32_t>(Float2Bf16Bits(v[3])) << 16);
  *reinterpret_cast<uint2*>(p + i) = q;
}

__device__ __forceinline__ void SetErrorFlag(uint32_t* flags, uint32_t bit) {
  if (flags != nullptr) atomicOr(flags, bit);
}

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace expertmesh::cuda::ops

#endif  // EXPERTMESH_KERNELS_CUDA_OPS_DEVICE_UTIL_CUH_
