// One thread per (mask, 32-token word): it reads its word once and writes -inf to the cleared
// tokens of that word. Rows are distinct, so no two threads write the same element.
#include <cmath>

#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/mask_logits.h"

namespace expertmesh::cuda {
namespace {

__global__ void MaskLogitsKernel(float* logits, int64_t vocab, const uint32_t* masks,
                                 const int32_t* rows, int64_t num_masks, int64_t words) {
  const int64_t total = num_masks * words;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx / words, w = idx - i * words;
    const uint32_t bits = masks[idx];
    if (bits == 0xffffffffu) continue;
    float* row = logits + static_cast<int64_t>(rows[i]) * vocab;
    const int64_t base = w * 32;
    const int64_t n = vocab - base < 32 ? vocab - base : 32;
    for (int64_t b = 0; b < n; ++b) {
      if (((bits >> b) & 1u) == 0) row[base + b] = -INFINITY;
    }
  }
}

}  // namespace

cudaError_t LaunchMaskLogits(const MaskLogitsArgs& a, cudaStream_t stream) {
  if (a.num_masks == 0 || a.vocab == 0) return cudaSuccess;
  if (a.logits == nullptr || a.masks == nullptr || a.rows == nullptr || a.vocab >= (1ll << 31)) {
    return cudaErrorInvalidValue;
  }
  constexpr int kThreads = 256;
  const int64_t words = ops::CeilDiv(a.vocab, 32);
  const int64_t blocks = ops::CeilDiv(a.num_masks * words, kThreads);
  const int grid = static_cast<int>(blocks < 132 * 32 ? blocks : 132 * 32);
  MaskLogitsKernel<<<grid, kThreads, 0, stream>>>(a.logits, a.vocab, a.masks, a.rows, a.num_masks,
                                                  words);
  return cudaGetLastError();
}

}  // namespace expertmesh::cuda
