#include <cuda_bf16.h>

#include "bench/cuda/gemm/bench_fill.h"

namespace expertmesh::cuda {
namespace {

__device__ uint32_t Hash(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

__global__ void FillKernel(__nv_bfloat16* data, size_t count, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t h = Hash(static_cast<uint32_t>(i) ^ Hash(seed + static_cast<uint32_t>(i >> 32)));
    const float u = static_cast<float>(h >> 8) * (1.0f / 16777216.0f);  // [0, 1)
    data[i] = __float2bfloat16_rn((2.0f * u - 1.0f) * scale);
  }
}

__global__ void FillE4m3Kernel(uint8_t* data, size_t count, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t b =
        Hash(static_cast<uint32_t>(i) ^ Hash(seed + static_cast<uint32_t>(i >> 32))) & 0xffu;
    if ((b & 0x7fu) == 0x7fu) b -= 1;  // NaN -> 448 (or -448)
    if ((b & 0x7fu) == 0) b |= 0x08u;  // zero -> 2^-6
    data[i] = static_cast<uint8_t>(b);
  }
}

}  // namespace

cudaError_t LaunchFillRandomE4m3(void* data, size_t count, uint32_t seed, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  FillE4m3Kernel<<<1024, 256, 0, stream>>>(static_cast<uint8_t*>(data), count, seed);
  return cudaGetLastError();
}

cudaError_t LaunchFillRandomBf16(void* data, size_t count, uint32_t seed, float scale,
                                 cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  FillKernel<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(data), count, seed, scale);
  return cudaGetLastError();
}

}  // namespace expertmesh::cuda
