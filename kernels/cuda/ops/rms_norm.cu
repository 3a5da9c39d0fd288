// RMSNorm (+ fused residual add): one warp per row for small dims (per-head q/k norms), one block
// per row otherwise. Each thread handles the same elements in both passes (sum of squares, then
// scale), so `out` may alias `x`, and the residual a thread stores is the one it reads back.
// Four elements per access (16-byte f32 / 8-byte bf16 vectors) when dim and pointers allow.
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/rms_norm.h"

namespace expertmesh::cuda {
namespace {

using ops::Bf16;

constexpr int kWarpRowsMaxDim = 512;  // up to here one warp per row
constexpr int kWarpsPerBlock = 8;

template <typename T, typename R, typename W, int kVec, bool kWarpPerRow>
__global__ void RmsNormKernel(const T* x, R* residual, const W* weight, T* out, int64_t rows,
                              int64_t dim, float eps) {
  __shared__ float scratch[32];
  const int lane = kWarpPerRow ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int group = kWarpPerRow ? 32 : static_cast<int>(blockDim.x);
  const int64_t first_row =
      kWarpPerRow ? static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5)
                  : blockIdx.x;
  const int64_t row_step =
      kWarpPerRow ? static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5) : gridDim.x;
  // Block mode: every thread runs the same number of iterations (BlockSum has barriers).
  for (int64_t row = first_row; row < rows; row += row_step) {
    const int64_t base = row * dim;
    float ss = 0.0f;
    for (int64_t i = static_cast<int64_t>(lane) * kVec; i < dim;
         i += static_cast<int64_t>(group) * kVec) {
      float h[kVec];
      if constexpr (kVec == 4) {
        ops::Load4(x, base + i, h);
      } else {
        h[0] = ops::ToFloat(x[base + i]);
      }
      if (residual != nullptr) {
        float r[kVec];
        if constexpr (kVec == 4) {
          ops::Load4(residual, base + i, r);
        } else {
          r[0] = ops::ToFloat(residual[base + i]);
        }
#pragma unroll
        for (int v = 0; v < kVec; ++v) h[v] = ops::RoundTo<R>(h[v] + r[v]);
        if constexpr (kVec == 4) {
          ops::Store4(residual, base + i, h);
        } else {
          residual[base + i] = ops::FromFloat<R>(h[0]);
        }
      }
#pragma unroll
      for (int v = 0; v < kVec; ++v) ss += h[v] * h[v];
    }
    ss = kWarpPerRow ? ops::WarpSum(ss) : ops::BlockSum(ss, scratch);
    const float variance = ss / static_cast<float>(dim);
    const float inv_rms = 1.0f / sqrtf(variance + eps);
    for (int64_t i = static_cast<int64_t>(lane) * kVec; i < dim;
         i += static_cast<int64_t>(group) * kVec) {
      float h[kVec], w[kVec];
      if constexpr (kVec == 4) {
        if (residual != nullptr) {
          ops::Load4(residual, base + i, h);
        } else {
          ops::Load4(x, base + i, h);
        }
        ops::Load4(weight, i, w);
      } else {
        h[0] = residual != nullptr ? ops::ToFloat(residual[base + i]) : ops::ToFloat(x[base + i]);
        w[0] = ops::ToFloat(weight[i]);
      }
#pragma unroll
      for (int v = 0; v < kVec; ++v) h[v] = w[v] * ops::RoundTo<T>(h[v] * inv_rms);
      if constexpr (kVec == 4) {
        ops::Store4(out, base + i, h);
      } else {
        out[base + i] = ops::FromFloat<T>(h[0]);
      }
    }
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, typename R, typename W>
cudaError_t Launch(const RmsNormArgs& a, cudaStream_t stream) {
  const T* x = static_cast<const T*>(a.x);
  R* res = static_cast<R*>(a.residual);
  const W* w = static_cast<const W*>(a.weight);
  T* out = static_cast<T*>(a.out);
  const bool vec = a.dim % 4 == 0 && Aligned16(a.x) && Aligned16(a.out) && Aligned16(a.weight) &&
                   (a.residual == nullptr || Aligned16(a.residual));
  if (a.dim <= kWarpRowsMaxDim) {
    const int64_t blocks = ops::CeilDiv(a.rows, kWarpsPerBlock);
    const int grid = static_cast<int>(blocks < 65535 ? blocks : 65535);
    if (vec) {
      RmsNormKernel<T, R, W, 4, true>
          <<<grid, 32 * kWarpsPerBlock, 0, stream>>>(x, res, w, out, a.rows, a.dim, a.eps);
    } else {
      RmsNormKernel<T, R, W, 1, true>
          <<<grid, 32 * kWarpsPerBlock, 0, stream>>>(x, res, w, out, a.rows, a.dim, a.eps);
    }
  } else {
    const int grid = static_cast<int>(a.rows < 65535 ? a.rows : 65535);
    // Enough threads that each handles a few vectors: 256 up to 4k elements, then 512, 1024.
    const int64_t per_thread = vec ? 16 : 4;
    int threads = 256;
    while (threads < 1024 && threads * per_thread < a.dim) threads *= 2;
    if (vec) {
      RmsNormKernel<T, R, W, 4, false>
          <<<grid, threads, 0, stream>>>(x, res, w, out, a.rows, a.dim, a.eps);
    } else {
      RmsNormKernel<T, R, W, 1, false>
          <<<grid, threads, 0, stream>>>(x, res, w, out, a.rows, a.dim, a.eps);
    }
  }
  return cudaGetLastError();
}

template <typename T, typename R>
cudaError_t DispatchWeight(const RmsNormArgs& a, cudaStream_t stream) {
  switch (a.weight_dtype) {
    case DType::kF32:
      return Launch<T, R, float>(a, stream);
    case DType::kBF16:
      return Launch<T, R, Bf16>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

template <typename T>
cudaError_t DispatchResidual(const RmsNormArgs& a, cudaStream_t stream) {
  // Without a residual its dtype is irrelevant: use T to instantiate fewer kernels.
  const DType rdt = a.residual == nullptr ? a.dtype : a.residual_dtype;
  switch (rdt) {
    case DType::kF32:
      return DispatchWeight<T, float>(a, stream);
    case DType::kBF16:
      return DispatchWeight<T, Bf16>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t LaunchRmsNorm(const RmsNormArgs& a, cudaStream_t stream) {
  if (a.dtype != DType::kF32 && a.dtype != DType::kBF16) return cudaErrorInvalidValue;
  if (a.rows == 0 || a.dim == 0) return cudaSuccess;
  return a.dtype == DType::kF32 ? DispatchResidual<float>(a, stream)
                                : DispatchResidual<Bf16>(a, stream);
}

}  // namespace expertmesh::cuda
