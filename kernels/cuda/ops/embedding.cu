// Embedding lookup: one block per token row (grid-stride over tokens), bit-exact copies when the
// table already has the output dtype (16-byte vectors where the row allows), else via fp32.
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/embedding.h"

namespace expertmesh::cuda {
namespace {

constexpr int kThreads = 256;

// Copies `units` elements of type U per row (U = uint4 for 16-byte vectors, else the element).
template <typename U>
__global__ void EmbeddingCopyKernel(const U* table, const int32_t* ids, U* out, int64_t n,
                                    int64_t vocab, int64_t units, uint32_t* flags) {
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const int32_t id = ids[t];
    U* dst = out + t * units;
    if (id < 0 || id >= vocab) {
      if (threadIdx.x == 0) ops::SetErrorFlag(flags, kErrorEmbeddingId);
      for (int64_t i = threadIdx.x; i < units; i += blockDim.x) dst[i] = U{};
      continue;
    }
    const U* src = table + static_cast<int64_t>(id) * units;
    for (int64_t i = threadIdx.x; i < units; i += blockDim.x) dst[i] = src[i];
  }
}

template <typename TIn, typename TOut>
__global__ void EmbeddingConvertKernel(const TIn* table, const int32_t* ids, TOut* out, int64_t n,
                                       int64_t vocab, int64_t hidden, uint32_t* flags) {
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const int32_t id = ids[t];
    TOut* dst = out + t * hidden;
    const bool bad = id < 0 || id >= vocab;
    if (bad && threadIdx.x == 0) ops::SetErrorFlag(flags, kErrorEmbeddingId);
    const TIn* src = table + (bad ? 0 : static_cast<int64_t>(id) * hidden);
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
      dst[i] = ops::FromFloat<TOut>(bad ? 0.0f : ops::ToFloat(src[i]));
    }
  }
}

int GridFor(int64_t n) { return static_cast<int>(n < 65535 ? n : 65535); }

template <typename U>
cudaError_t LaunchCopy(const EmbeddingArgs& a, int64_t units, cudaStream_t stream) {
  EmbeddingCopyKernel<U><<<GridFor(a.num_tokens), kThreads, 0, stream>>>(
      static_cast<const U*>(a.table), a.ids, static_cast<U*>(a.out), a.num_tokens, a.vocab, units,
      a.error_flags);
  return cudaGetLastError();
}

template <typename TIn, typename TOut>
cudaError_t LaunchConvert(const EmbeddingArgs& a, cudaStream_t stream) {
  EmbeddingConvertKernel<TIn, TOut><<<GridFor(a.num_tokens), kThreads, 0, stream>>>(
      static_cast<const TIn*>(a.table), a.ids, static_cast<TOut*>(a.out), a.num_tokens, a.vocab,
      a.hidden, a.error_flags);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchEmbedding(const EmbeddingArgs& a, cudaStream_t stream) {
  if (a.out_dtype != DType::kF32 && a.out_dtype != DType::kBF16) return cudaErrorInvalidValue;
  if (a.num_tokens == 0 || a.hidden == 0) return cudaSuccess;
  if (a.table_dtype == a.out_dtype) {
    const int64_t row_bytes = a.hidden * static_cast<int64_t>(DTypeSize(a.out_dtype));
    const bool vec = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(a.table) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(a.out) % 16 == 0;
    if (vec) return LaunchCopy<uint4>(a, row_bytes / 16, stream);
    if (a.out_dtype == DType::kF32) return LaunchCopy<uint32_t>(a, a.hidden, stream);
    return LaunchCopy<uint16_t>(a, a.hidden, stream);
  }
  const bool to_f32 = a.out_dtype == DType::kF32;
  switch (a.table_dtype) {
    case DType::kBF16:  // to f32 (same dtype handled above)
      return LaunchConvert<ops::Bf16, float>(a, stream);
    case DType::kF32:  // to bf16
      return LaunchConvert<float, ops::Bf16>(a, stream);
    case DType::kF16:
      return to_f32 ? LaunchConvert<ops::F16, float>(a, stream)
                    : LaunchConvert<ops::F16, ops::Bf16>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace expertmesh::cuda
