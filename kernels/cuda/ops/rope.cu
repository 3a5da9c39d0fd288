// Rotary embedding in place: one block per token; the block walks the heads in chunks of whole
// heads, one rotated pair per thread. Each chunk reads all its pairs, synchronises, then writes,
// because kDeinterleaveNeox writes elements that other threads' pairs read.
// Products are rounded separately (no fused multiply-add), as the CPU computes them.
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/rope.h"

namespace expertmesh::cuda {
namespace {

using ops::Bf16;

template <typename T>
__device__ void RotateHeads(T* x, int64_t t, int64_t heads, int64_t head_dim, const float* cs,
                            RopeStyleCode style, int rotary_dim, int rotary_offset) {
  const int half = rotary_dim / 2;
  const int heads_per_chunk = static_cast<int>(blockDim.x) / half;
  const int idx = static_cast<int>(threadIdx.x);
  const int i = idx % half;
  // The element pair a thread reads, and the pair its results go to.
  int in1, in2, out1, out2;
  switch (style) {
    case RopeStyleCode::kInterleaved:
      in1 = out1 = 2 * i;
      in2 = out2 = 2 * i + 1;
      break;
    case RopeStyleCode::kDeinterleaveNeox:
      in1 = 2 * i, in2 = 2 * i + 1;
      out1 = i, out2 = half + i;
      break;
    default:  // kNeox
      in1 = out1 = i;
      in2 = out2 = half + i;
      break;
  }
  const float c = cs[i], s = cs[half + i];
  for (int64_t h0 = 0; h0 < heads; h0 += heads_per_chunk) {
    const int64_t h = h0 + idx / half;
    const bool active = idx < heads_per_chunk * half && h < heads;
    T* slice = x + (t * heads + h) * head_dim + rotary_offset;
    float o1 = 0.0f, o2 = 0.0f;
    if (active) {
      const float x1 = ops::ToFloat(slice[in1]), x2 = ops::ToFloat(slice[in2]);
      o1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
      o2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
    __syncthreads();
    if (active) {
      slice[out1] = ops::FromFloat<T>(o1);
      slice[out2] = ops::FromFloat<T>(o2);
    }
  }
}

template <typename TQ, typename TK>
__global__ void RopeKernel(RopeArgs a) {
  for (int64_t t = blockIdx.x; t < a.num_tokens; t += gridDim.x) {
    const int32_t pos = a.positions[t];
    if (pos < 0 || pos >= a.max_positions) {
      if (threadIdx.x == 0) ops::SetErrorFlag(a.error_flags, kErrorRopePosition);
      continue;  // uniform over the block
    }
    const float* cs = a.cos_sin + static_cast<int64_t>(pos) * a.rotary_dim;
    RotateHeads(static_cast<TQ*>(a.q), t, a.q_heads, a.q_head_dim, cs, a.style, a.rotary_dim,
                a.rotary_offset);
    if (a.k != nullptr) {
      RotateHeads(static_cast<TK*>(a.k), t, a.k_heads, a.k_head_dim, cs, a.style, a.rotary_dim,
                  a.rotary_offset);
    }
  }
}

template <typename TQ, typename TK>
cudaError_t Launch(const RopeArgs& a, cudaStream_t stream) {
  const int half = a.rotary_dim / 2;
  // Whole heads per chunk: at least one head's pairs, up to 256 threads' worth of them.
  int threads = 32;
  while (threads < half || (threads < 256 && threads < half * (a.q_heads + a.k_heads))) {
    threads *= 2;
  }
  const int grid = static_cast<int>(a.num_tokens < 65535 ? a.num_tokens : 65535);
  RopeKernel<TQ, TK><<<grid, threads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename TQ>
cudaError_t DispatchK(const RopeArgs& a, cudaStream_t stream) {
  if (a.k == nullptr) return Launch<TQ, TQ>(a, stream);
  switch (a.k_dtype) {
    case DType::kF32:
      return Launch<TQ, float>(a, stream);
    case DType::kBF16:
      return Launch<TQ, Bf16>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t LaunchRope(const RopeArgs& a, cudaStream_t stream) {
  if (a.rotary_dim <= 0 || a.rotary_dim % 2 != 0 || a.rotary_dim / 2 > 1024) {
    return cudaErrorInvalidValue;
  }
  if (a.style != RopeStyleCode::kNeox && a.style != RopeStyleCode::kInterleaved &&
      a.style != RopeStyleCode::kDeinterleaveNeox) {
    return cudaErrorInvalidValue;
  }
  if (a.num_tokens == 0) return cudaSuccess;
  switch (a.q_dtype) {
    case DType::kF32:
      return DispatchK<float>(a, stream);
    case DType::kBF16:
      return DispatchK<Bf16>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace expertmesh::cuda
