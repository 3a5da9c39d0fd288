// Device pieces of the decode-sized weight streams (fp8_gemv.cu, q4_gemv.cu) that do not depend
// on the weight format: the 16-byte weight chunk load and the epilogue that reduces each warp's
// partial sums and writes them. How a chunk is dequantized and multiplied stays in each kernel.
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_GEMV_STREAM_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_GEMV_STREAM_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/gemm/simt_tile.cuh"

namespace expertmesh::cuda::gemm_internal {

// The 16-byte weight chunk at p, or zeros where there is none (`ok` false: past the row's
// chunks, or a weight row past n).
__device__ __forceinline__ uint4 LoadW16(const uint8_t* p, bool ok) {
  return ok ? __ldg(reinterpret_cast<const uint4*>(p)) : make_uint4(0, 0, 0, 0);
}

// The streams' epilogue: a warp owns weight rows rows[rr] (valid[rr]: below n) and each lane
// holds its partial sums acc[rr][t] for token row row_begin + t (t < tokens). Each sum is reduced
// across the warp by shuffles; lane rr * kTileM + t adds the bias and rounds it once into out.
template <int kRowsPerWarp, int kTileM, typename BT, typename OT>
__device__ __forceinline__ void StoreWarpSums(const float (&acc)[kRowsPerWarp][kTileM],
                                              const int (&rows)[kRowsPerWarp],
                                              const bool (&valid)[kRowsPerWarp], int lane,
                                              int tokens, int row_begin, int n,
                                              const BT* __restrict__ bias, OT* __restrict__ out) {
  static_assert(kRowsPerWarp * kTileM <= 32, "one writing lane per sum");
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
#pragma unroll
    for (int t = 0; t < kTileM; ++t) {
      float v = acc[rr][t];
#pragma unroll
      for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
      // Every lane holds the sum; lane rr * kTileM + t writes it.
      if (lane == rr * kTileM + t && t < tokens && valid[rr]) {
        if (bias != nullptr) v += LoadAsFloat(bias + rows[rr]);
        StoreFromFloat(out + static_cast<size_t>(row_begin + t) * n + rows[rr], v);
      }
    }
  }
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_GEMV_STREAM_CUH_
