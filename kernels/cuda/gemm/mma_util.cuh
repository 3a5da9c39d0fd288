// Tensor-core building blocks shared by the grouped bf16 GEMM and the fp8 GEMMs: cp.async,
// ldmatrix, mma.sync, the swizzled 128-byte-row shared-memory tile they all use (see
// moe_grouped_gemm_mma.cu for the layout and the fragment maps), and the pieces of their common
// kernel shape: the warp tiling, the cp.async stage pipeline, one k-tile's fragment loads and
// mma.syncs per warp, and the masked store of the accumulators.
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

// 16 floats times `scale` -> 16 bf16 (each rounded once, to nearest even), as the two 16-byte
// words of a swizzled bf16 tile row: the quantized-weight kernels' dequantized weights (fp8
// passes its already scaled values and 1, an exact product).
__device__ __forceinline__ void PackBf16x16(const float (&f)[16], float scale, uint4& lo,
                                            uint4& hi) {
  uint32_t w[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const __nv_bfloat162 b = __floats2bfloat162_rn(f[2 * i] * scale, f[2 * i + 1] * scale);
    w[i] = *reinterpret_cast<const uint32_t*>(&b);
  }
  lo = make_uint4(w[0], w[1], w[2], w[3]);
  hi = make_uint4(w[4], w[5], w[6], w[7]);
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

// The CTA and warp tiling of a tensor-core kernel: a kTileM x kTileN output tile per work item,
// k-tiles of kTileK elements (one 128-byte swizzled row: 64 bf16 or 128 e4m3) streamed through
// kStages shared-memory stages, kWarpsM x kWarpsN warps of kWarpM x kWarpN, each a kMi x kNi
// grid of m16n8 accumulator fragments.
template <int kTileM_, int kTileN_, int kTileK_, int kWarpsM_, int kWarpsN_, int kStages_,
          int kCtasPerSm_>
struct MmaTiling {
  static constexpr int kTileM = kTileM_;
  static constexpr int kTileN = kTileN_;
  static constexpr int kTileK = kTileK_;
  static constexpr int kWarpsM = kWarpsM_;
  static constexpr int kWarpsN = kWarpsN_;
  static constexpr int kStages = kStages_;
  static constexpr int kCtasPerSm = kCtasPerSm_;
  static constexpr int kThreads = kWarpsM * kWarpsN * 32;
  static constexpr int kWarpM = kTileM / kWarpsM;
  static constexpr int kWarpN = kTileN / kWarpsN;
  static constexpr int kMi = kWarpM / 16;  // m16 fragments per warp
  static constexpr int kNi = kWarpN / 8;   // n8 fragments per warp
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "warp tile of whole ldmatrix.x4 loads");
};

template <int kMi, int kNi>
__device__ __forceinline__ void ZeroAccumulators(float (&acc)[kMi][kNi][4]) {
#pragma unroll
  for (int i = 0; i < kMi; ++i) {
#pragma unroll
    for (int j = 0; j < kNi; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;
    }
  }
}

// The cp.async pipeline over k-tiles: group g of cp.async loads k-tile g (empty groups past the
// end keep the count uniform). `load_stage(stage, kt)` issues the copies of k-tile kt into
// stage `stage`.
template <int kStages, typename LoadStage>
__device__ __forceinline__ void PipelinePrologue(int k_tiles, LoadStage& load_stage) {
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    CpAsyncCommit();
  }
}

// At the top of k-tile kt: at most kStages - 2 groups pending means group kt (this k-tile) has
// landed, for this thread; the barrier makes it everyone's, and also tells that every warp is
// done with the stage read in iteration kt - 1, which the prefetch of k-tile kt + kStages - 1
// then overwrites.
template <int kStages, typename LoadStage>
__device__ __forceinline__ void PipelineAdvance(int kt, int k_tiles, LoadStage& load_stage) {
  CpAsyncWait<kStages - 2>();
  __syncthreads();
  const int next = kt + kStages - 1;
  if (next < k_tiles) load_stage(next % kStages, next);
  CpAsyncCommit();
}

// After the last k-tile: nothing real is pending (only empty groups), but drain anyway; the
// barrier keeps the next item's prologue from overwriting a stage another warp still reads.
__device__ __forceinline__ void PipelineDrain() {
  CpAsyncWait<0>();
  __syncthreads();
}

enum class MmaOperands { kBf16, kE4m3 };

// acc += this warp's part of A B over one k-tile of swizzled 128-byte rows: A at a_tile (Cfg's
// kTileM rows), B at b_tile (kTileN rows of W, k contiguous). Four k steps of 32 bytes each:
// m16n8k16 for bf16, m16n8k32 for e4m3 (the fragments are the same bytes either way).
template <typename Cfg, MmaOperands kOperands>
__device__ __forceinline__ void WarpTileMma(float (&acc)[Cfg::kMi][Cfg::kNi][4], uint32_t a_tile,
                                            uint32_t b_tile, int warp_m, int warp_n, int lane) {
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    uint32_t a_frag[Cfg::kMi][4];
    uint32_t b_frag[Cfg::kNi][2];
#pragma unroll
    for (int i = 0; i < Cfg::kMi; ++i) {
      const int r = warp_m * Cfg::kWarpM + i * 16 + (lane & 15);
      LdMatrixX4(a_frag[i], a_tile + Swizzle(r, ks * 2 + (lane >> 4)));
    }
#pragma unroll
    for (int j = 0; j < Cfg::kNi / 2; ++j) {
      const int r = warp_n * Cfg::kWarpN + j * 16 + ((lane >> 4) << 3) + (lane & 7);
      uint32_t t[4];
      LdMatrixX4(t, b_tile + Swizzle(r, ks * 2 + ((lane >> 3) & 1)));
      b_frag[2 * j][0] = t[0];
      b_frag[2 * j][1] = t[1];
      b_frag[2 * j + 1][0] = t[2];
      b_frag[2 * j + 1][1] = t[3];
    }
#pragma unroll
    for (int i = 0; i < Cfg::kMi; ++i) {
#pragma unroll
      for (int j = 0; j < Cfg::kNi; ++j) {
        if constexpr (kOperands == MmaOperands::kE4m3) {
          MmaE4m3(acc[i][j], a_frag[i], b_frag[j]);
        } else {
          MmaBf16(acc[i][j], a_frag[i], b_frag[j]);
        }
      }
    }
  }
}

// Stores this warp's accumulators to out [*, n] (f32 or bf16). row0 and col0 are the thread's
// first row and column (fragment i covers rows row0 + 16 i + {0, 8}, fragment j columns
// col0 + 8 j + {0, 1}); rows >= row_end and columns >= n are not written.
template <typename Cfg, bool kOutF32>
__device__ __forceinline__ void StoreAccumulators(void* out,
                                                  const float (&acc)[Cfg::kMi][Cfg::kNi][4],
                                                  int row0, int col0, int row_end, int n,
                                                  bool n_even) {
#pragma unroll
  for (int i = 0; i < Cfg::kMi; ++i) {
    const int row = row0 + 16 * i;
#pragma unroll
    for (int j = 0; j < Cfg::kNi; ++j) {
      const int col = col0 + 8 * j;
      if (col >= n) continue;
      if (row < row_end) {
        StorePair<kOutF32>(out, row, col, n, n_even, acc[i][j][0], acc[i][j][1]);
      }
      if (row + 8 < row_end) {
        StorePair<kOutF32>(out, row + 8, col, n, n_even, acc[i][j][2], acc[i][j][3]);
      }
    }
  }
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_MMA_UTIL_CUH_
