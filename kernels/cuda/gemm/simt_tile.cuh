// The fp32 SIMT GEMM tile shared by the fallback kernels (dense linear with mixed or f32
// dtypes, grouped GEMM with f32 operands or in % 8 != 0): out[r, c] = sum_k x[r, k] w[c, k]
// (+ bias[c]) over a 64x64 tile, 256 threads, each owning a 4x4 strided block of outputs.
// Every element is bounds-checked, so any shape and alignment works; speed is secondary (the
// tensor-core and cuBLASLt paths serve bf16). Each output is summed in k order in fp32, then
// rounded once to the output dtype.
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_SIMT_TILE_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_SIMT_TILE_CUH_

#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

namespace expertmesh::cuda::gemm_internal {

inline constexpr int kSimtThreads = 256;
inline constexpr int kSimtTile = 64;
inline constexpr int kSimtTileK = 16;

__device__ __forceinline__ float LoadAsFloat(const float* p) { return *p; }
__device__ __forceinline__ float LoadAsFloat(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}
__device__ __forceinline__ void StoreFromFloat(float* p, float v) { *p = v; }
__device__ __forceinline__ void StoreFromFloat(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

struct SimtSmem {
  // k-major with one float of padding, so the transposing stores spread over the banks.
  float a[kSimtTileK][kSimtTile + 1];
  float b[kSimtTileK][kSimtTile + 1];
};

// As SimtGemmTile, with weights read through `w(col, kk)` (col < n, kk < k). With `x_cols`
// (device [k]), weight column kk multiplies activation column x_cols[kk] (act-order q4 weights).
template <typename XT, typename WReader, typename BT, typename OT>
__device__ void SimtGemmTileWith(const XT* __restrict__ x, const WReader& w,
                                 const BT* __restrict__ bias, OT* __restrict__ out, int row_begin,
                                 int row_end, int n_begin, int n, int k, SimtSmem& smem,
                                 const int32_t* __restrict__ x_cols = nullptr) {
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % 16;
  const int ty = tid / 16;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  }
  for (int k0 = 0; k0 < k; k0 += kSimtTileK) {
#pragma unroll
    for (int j = 0; j < (kSimtTile * kSimtTileK) / kSimtThreads; ++j) {
      const int e = tid + j * kSimtThreads;
      const int r = e / kSimtTileK;
      const int kk = e % kSimtTileK;
      const int kg = k0 + kk;
      const int row = row_begin + r;
      const int col = n_begin + r;
      const int xk = (x_cols != nullptr && kg < k) ? x_cols[kg] : kg;
      smem.a[kk][r] =
          (row < row_end && kg < k) ? LoadAsFloat(x + static_cast<size_t>(row) * k + xk) : 0.0f;
      smem.b[kk][r] = (col < n && kg < k) ? w(col, kg) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtTileK; ++kk) {
      float a[4];
      float b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = smem.a[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = smem.b[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = row_begin + ty + 16 * i;
    if (row >= row_end) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = n_begin + tx + 16 * j;
      if (col >= n) continue;
      float v = acc[i][j];
      if (bias != nullptr) v += LoadAsFloat(bias + col);
      StoreFromFloat(out + static_cast<size_t>(row) * n + col, v);
    }
  }
}

// A row-major [n, k] weight of f32 or bf16: element (col, kk) as a float. SimtGemmTile reads
// weights through such a reader, so block-quantized ones (fp8_gemm_simt.cu) share the tile.
template <typename WT>
struct PlainWeightReader {
  const WT* __restrict__ w;
  int k;
  __device__ __forceinline__ float operator()(int col, int kk) const {
    return LoadAsFloat(w + static_cast<size_t>(col) * k + kk);
  }
};

// Rows [row_begin, row_end) of x (row stride k) times columns [n_begin, n_begin + 64) ∩ [0, n)
// of w (rows of w, stride k). `bias` may be null. All 256 threads must call it (it has
// barriers); `smem` must not be in use by anyone else.
template <typename XT, typename WT, typename BT, typename OT>
__device__ void SimtGemmTile(const XT* __restrict__ x, const WT* __restrict__ w,
                             const BT* __restrict__ bias, OT* __restrict__ out, int row_begin,
                             int row_end, int n_begin, int n, int k, SimtSmem& smem) {
  SimtGemmTileWith(x, PlainWeightReader<WT>{w, k}, bias, out, row_begin, row_end, n_begin, n, k,
                   smem);
}
}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_SIMT_TILE_CUH_
