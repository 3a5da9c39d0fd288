// Tensor-core building blocks shared by the grouped bf16 GEMM and the fp8 GEMMs: cp.async,
// ldmatrix, mma.sync, and the swizzled 128-byte-row shared-memory tile they all use (see
// moe_grouped_gemm_mma.cu for the layout and the fragment maps).
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_MMA_UTIL_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_MMA_UTIL_CUH_

#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

namespace expertmesh::cuda::gemm_internal {

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros and reads nothing.
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void MmaBf16(float (&c)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// D += A B with e4m3 operands (sm_89+), m16n8k32. Each register holds 4 consecutive k of one
// row (A) or column (B): a0 rows 0-7 k 0-15, a1 rows 8-15 k 0-15, a2 rows 0-7 k 16-31, a3 rows
// 8-15 k 16-31; b0 k 0-15, b1 k 16-31 -- byte for byte what ldmatrix returns for 8x16-byte
// matrices, so fp8 tiles use the bf16 kernels' swizzle and ldmatrix addressing unchanged.
__device__ __forceinline__ void MmaE4m3(float (&c)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled tile.
__device__ __forceinline__ uint32_t Swizzle(int row, int chunk) {
  return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// Copies rows [row0, row0 + kRows) x k [k0, k0 + 128 / sizeof(T)) of a row-major [*, k] matrix
// of T (one 128-byte row per tile row: 64 bf16 or 128 e4m3) into a swizzled tile; rows >=
// row_end and k >= k are zero-filled. REQUIRES: k a multiple of 16 / sizeof(T).
template <int kRows, int kThreads, typename T>
__device__ __forceinline__ void LoadTile(uint32_t tile, const T* __restrict__ src, int row0,
                                         int row_end, int k0, int k) {
  constexpr int kPerChunk = 16 / static_cast<int>(sizeof(T));
#pragma unroll
  for (int j = 0; j < (kRows * 8) / kThreads; ++j) {
    const int i = static_cast<int>(threadIdx.x) + j * kThreads;
    const int r = i >> 3;
    const int c = i & 7;
    const int row = row0 + r;
    const int kk = k0 + c * kPerChunk;
    const bool ok = row < row_end && kk < k;
    const T* p = ok ? src + static_cast<size_t>(row) * k + kk : src;
    CpAsync16(tile + Swizzle(r, c), p, ok ? 16 : 0);
  }
}

template <bool kOutF32>
__device__ __forceinline__ void StorePair(void* out, int row, int col, int n, bool n_even, float v0,
                                          float v1) {
  const size_t index = static_cast<size_t>(row) * n + col;
  if constexpr (kOutF32) {
    float* o = static_cast<float*>(out) + index;
    if (n_even) {
      *reinterpret_cast<float2*>(o) = make_float2(v0, v1);  // col even, n even: 8-byte aligned
    } else {
      if (col < n) o[0] = v0;
      if (col + 1 < n) o[1] = v1;
    }
  } else {
    __nv_bfloat16* o = static_cast<__nv_bfloat16*>(out) + index;
    if (n_even) {
      *reinterpret_cast<__nv_bfloat162*>(o) = __floats2bfloat162_rn(v0, v1);
    } else {
      if (col < n) o[0] = __float2bfloat16_rn(v0);
      if (col + 1 < n) o[1] = __float2bfloat16_rn(v1);
    }
  }
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_MMA_UTIL_CUH_
