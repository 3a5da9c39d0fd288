// The index arithmetic of the q4-weight kernels (q4_gemv.cu, q4_gemm_mma.cu, q4_gemm_simt.cu):
// which values of a packed row (kernels/q4_layout.h) a 16-byte chunk or a nibble holds, and
// which group (kernels::BlockScales) a weight element takes its scale and zero point from. A
// plain header, callable from host and device code alike, so that cuda_q4_gemm_test checks it
// against kernels/q4_layout.h and the trimmed grids without a GPU.
//
// Internal to kernels/cuda/gemm (q4_common.cuh and the tests include it).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_Q4_INDEX_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_Q4_INDEX_H_

#include <cstdint>

#include "kernels/cuda/gemm/q4_gemm.h"

#if defined(__CUDACC__)
#define EXPERTMESH_Q4_INDEX_FN __host__ __device__ __forceinline__
#else
#define EXPERTMESH_Q4_INDEX_FN inline
#endif

namespace expertmesh::cuda::gemm_internal {

// The two runs of 16 values a 16-byte chunk holds: its low nibbles are values [lo, lo + 16),
// its high nibbles [hi, hi + 16). Runs start at multiples of 16, so each lies inside one group
// (groups and their offsets are multiples of 32).
struct Q4Runs {
  int lo;
  int hi;
};

// Chunk `chunk` (bytes [16 chunk, 16 chunk + 16)) of a packed row of k values. In a 64-wide unit
// (bytes 32 u .. 32 u + 31) chunk 2u + h has lo = 64 u + 16 h and hi = lo + 32; the last unit of
// a row of an odd multiple of 32 values is one chunk, hi = lo + 16.
EXPERTMESH_Q4_INDEX_FN Q4Runs Q4RunsOf(int k, int chunk) {
  const int whole_chunks = (k / 64) * 2;  // chunks in 64-wide units
  if (chunk < whole_chunks) {
    const int lo = (chunk >> 1) * 64 + (chunk & 1) * 16;
    return {lo, lo + 32};
  }
  const int lo = (k / 64) * 64;
  return {lo, lo + 16};
}

// The tensor-core path's k step of 64 values is one 64-wide unit: 32 bytes per weight row, chunk
// c (0 or 1) holding the step's columns [16 c, 16 c + 16) and [16 c + 32, 16 c + 48). The last
// step of a row of an odd multiple of 32 values (`narrow`) is its 32-wide unit, all in chunk 0
// (columns 0..15 and 16..31); chunk 1 then lies past the row (its runs, columns 32..47 and
// 48..63, are the tile's zero columns).
EXPERTMESH_Q4_INDEX_FN Q4Runs Q4StepRunsOf(bool narrow, int c) {
  const int lo = narrow ? 32 * c : 16 * c;
  return {lo, lo + (narrow ? 16 : 32)};
}

// Where value c of a packed row of k values is: its byte and whether it is the high nibble.
struct Q4Nibble {
  int byte;
  bool high;
};
EXPERTMESH_Q4_INDEX_FN Q4Nibble Q4NibbleOf(int k, int c) {
  const int whole = (k / 64) * 64;
  if (c < whole) {
    const int o = c & 63;
    return {(c >> 6) * 32 + (o & 31), o >= 32};
  }
  const int o = c - whole;
  return {whole / 2 + (o & 15), o >= 16};
}

// Group index (into the scale and zero grids) of weight element [r][c].
EXPERTMESH_Q4_INDEX_FN int Q4GroupIndex(const Q4Groups& g, int r, int c) {
  return ((r + g.row_offset) / g.block_rows) * g.ld + (c + g.col_offset) / g.group_size;
}

}  // namespace expertmesh::cuda::gemm_internal

#undef EXPERTMESH_Q4_INDEX_FN

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_Q4_INDEX_H_
