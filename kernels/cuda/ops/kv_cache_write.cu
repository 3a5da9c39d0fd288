// KV-cache write: one block per (token, k or v). Same dtypes copy bit-exactly (16-byte vectors
// where the row allows); f32 into a bf16 cache rounds to nearest even, as the CPU.
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/kv_cache_write.h"

namespace expertmesh::cuda {
namespace {

// Row r of src goes to row slot of dst; `units` elements of U per row (k: blockIdx.y 0, v: 1).
template <typename U>
__global__ void KvCopyKernel(const U* k, const U* v, U* k_cache, U* v_cache,
                             const int32_t* slot_mapping, int64_t n, int64_t k_units,
                             int64_t v_units, int64_t num_slots, uint32_t* flags) {
  const bool is_v = blockIdx.y == 1;
  const U* src = is_v ? v : k;
  U* dst = is_v ? v_cache : k_cache;
  const int64_t units = is_v ? v_units : k_units;
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const int32_t slot = slot_mapping[t];
    if (slot < 0) continue;  // padding
    if (slot >= num_slots) {
      if (threadIdx.x == 0) ops::SetErrorFlag(flags, kErrorKvSlot);
      continue;
    }
    const U* s = src + t * units;
    U* d = dst + static_cast<int64_t>(slot) * units;
    for (int64_t i = threadIdx.x; i < units; i += blockDim.x) d[i] = s[i];
  }
}

__global__ void KvConvertKernel(const float* k, const float* v, ops::Bf16* k_cache,
                                ops::Bf16* v_cache, const int32_t* slot_mapping, int64_t n,
                                int64_t k_row, int64_t v_row, int64_t num_slots, uint32_t* flags) {
  const bool is_v = blockIdx.y == 1;
  const float* src = is_v ? v : k;
  ops::Bf16* dst = is_v ? v_cache : k_cache;
  const int64_t row = is_v ? v_row : k_row;
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const int32_t slot = slot_mapping[t];
    if (slot < 0) continue;
    if (slot >= num_slots) {
      if (threadIdx.x == 0) ops::SetErrorFlag(flags, kErrorKvSlot);
      continue;
    }
    const float* s = src + t * row;
    ops::Bf16* d = dst + static_cast<int64_t>(slot) * row;
    for (int64_t i = threadIdx.x; i < row; i += blockDim.x) d[i] = ops::FromFloat<ops::Bf16>(s[i]);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename U>
cudaError_t LaunchCopy(const KvCacheWriteArgs& a, int64_t k_units, int64_t v_units, dim3 grid,
                       cudaStream_t stream) {
  KvCopyKernel<U><<<grid, 128, 0, stream>>>(static_cast<const U*>(a.k), static_cast<const U*>(a.v),
                                            static_cast<U*>(a.k_cache), static_cast<U*>(a.v_cache),
                                            a.slot_mapping, a.num_tokens, k_units, v_units,
                                            a.num_slots, a.error_flags);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchKvCacheWrite(const KvCacheWriteArgs& a, cudaStream_t stream) {
  if (a.dtype != DType::kF32 && a.dtype != DType::kBF16) return cudaErrorInvalidValue;
  if (a.cache_dtype != a.dtype && a.cache_dtype != DType::kBF16) return cudaErrorInvalidValue;
  if (a.num_tokens == 0) return cudaSuccess;
  const int64_t k_row = a.kv_heads * a.k_dim, v_row = a.kv_heads * a.v_dim;
  const dim3 grid(static_cast<unsigned>(a.num_tokens < 65535 ? a.num_tokens : 65535), 2);
  if (a.cache_dtype != a.dtype) {
    KvConvertKernel<<<grid, 128, 0, stream>>>(
        static_cast<const float*>(a.k), static_cast<const float*>(a.v),
        static_cast<ops::Bf16*>(a.k_cache), static_cast<ops::Bf16*>(a.v_cache), a.slot_mapping,
        a.num_tokens, k_row, v_row, a.num_slots, a.error_flags);
    return cudaGetLastError();
  }
  const int64_t esize = static_cast<int64_t>(DTypeSize(a.dtype));
  const int64_t kb = k_row * esize, vb = v_row * esize;
  if (kb % 16 == 0 && vb % 16 == 0 && Aligned16(a.k) && Aligned16(a.v) && Aligned16(a.k_cache) &&
      Aligned16(a.v_cache)) {
    return LaunchCopy<uint4>(a, kb / 16, vb / 16, grid, stream);
  }
  if (a.dtype == DType::kF32) return LaunchCopy<uint32_t>(a, k_row, v_row, grid, stream);
  return LaunchCopy<uint16_t>(a, k_row, v_row, grid, stream);
}

}  // namespace expertmesh::cuda
