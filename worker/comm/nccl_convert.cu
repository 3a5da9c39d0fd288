// Grid-stride elementwise conversions; the rounding is the ops' (device_util.cuh), so the GPU
// rounds exactly as the CPU reference does.
#include "kernels/cuda/ops/device_util.cuh"
#include "worker/comm/nccl_convert.h"

namespace expertmesh::comm {
namespace {

constexpr int kThreads = 256;
// Enough blocks to fill an H100/H200 (132 SMs) several times over; the loop covers the rest.
constexpr size_t kMaxBlocks = 132 * 16;

int Blocks(size_t count) {
  const size_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

__global__ void Bf16ToF32Kernel(const uint16_t* src, float* dst, size_t count) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    dst[i] = cuda::ops::Bf16Bits2Float(src[i]);
  }
}

__global__ void F32ToBf16Kernel(const float* src, uint16_t* dst, size_t count) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    dst[i] = cuda::ops::Float2Bf16Bits(src[i]);
  }
}

}  // namespace

cudaError_t LaunchBf16ToF32(const uint16_t* src, float* dst, size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  Bf16ToF32Kernel<<<Blocks(count), kThreads, 0, stream>>>(src, dst, count);
  return cudaGetLastError();
}

cudaError_t LaunchF32ToBf16(const float* src, uint16_t* dst, size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  F32ToBf16Kernel<<<Blocks(count), kThreads, 0, stream>>>(src, dst, count);
  return cudaGetLastError();
}

}  // namespace expertmesh::comm
