// out = silu(gate) * up, elementwise over [num_tokens, inter] with a grid-stride loop.
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/silu_mul.h"

namespace expertmesh::cuda {
namespace {

template <typename T>
__global__ void SiluMulKernel(const T* gate_up, T* out, int64_t n, int64_t inter) {
  const int64_t total = n * inter;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / inter, i = idx - t * inter;
    const float g = ops::ToFloat(gate_up[t * 2 * inter + i]);
    const float u = ops::ToFloat(gate_up[t * 2 * inter + inter + i]);
    // HF materialises act_fn(gate) in the model dtype before the multiply.
    const float silu = ops::RoundTo<T>(__fdiv_rn(g, 1.0f + expf(-g)));
    out[idx] = ops::FromFloat<T>(silu * u);
  }
}

template <typename T>
cudaError_t Launch(const SiluMulArgs& a, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = ops::CeilDiv(a.num_tokens * a.inter, kThreads);
  const int grid = static_cast<int>(blocks < 132 * 32 ? blocks : 132 * 32);
  SiluMulKernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(a.gate_up),
                                                  static_cast<T*>(a.out), a.num_tokens, a.inter);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSiluMul(const SiluMulArgs& a, cudaStream_t stream) {
  if (a.num_tokens == 0 || a.inter == 0) {
    return a.dtype == DType::kF32 || a.dtype == DType::kBF16 ? cudaSuccess : cudaErrorInvalidValue;
  }
  switch (a.dtype) {
    case DType::kF32:
      return Launch<float>(a, stream);
    case DType::kBF16:
      return Launch<ops::Bf16>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace expertmesh::cuda
