#include <cuda_bf16.h>

#include "bench/cuda/attention/attention_fill.h"

namespace expertmesh::cuda {
namespace {

__global__ void FillKernel(uint16_t* data, int64_t count, uint32_t seed, float amplitude) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9e3779b9u ^ seed ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    const float u = (h >> 8) * (1.0f / 16777216.0f);  // [0, 1)
    const __nv_bfloat16 v = __float2bfloat16_rn((2.0f * u - 1.0f) * amplitude);
    data[i] = *reinterpret_cast<const uint16_t*>(&v);
  }
}

}  // namespace

cudaError_t FillRandomBf16(uint16_t* data, int64_t count, uint32_t seed, float amplitude,
                           cudaStream_t stream) {
  FillKernel<<<1024, 256, 0, stream>>>(data, count, seed, amplitude);
  return cudaGetLastError();
}

}  // namespace expertmesh::cuda
