// The obviously-correct paged attention: one CTA per (token, q head), any head dims and dtypes.
// Keys are taken kThreads at a time (one dot product per thread), then an online-softmax update
// of the output row, which lives in shared memory. Slow on long contexts; the fast kernels
// fall back to it for shapes they do not cover.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/attention/attention_common.cuh"
#include "kernels/cuda/attention/attention_kernels.h"

namespace expertmesh::cuda::attention {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

__device__ float BlockMax(float v, float* red) {
  v = WarpMax(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float r = red[0];
  for (int w = 1; w < kWarps; ++w) r = fmaxf(r, red[w]);
  __syncthreads();
  return r;
}

__device__ float BlockSum(float v, float* red) {
  v = WarpSum(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float r = 0.0f;
  for (int w = 0; w < kWarps; ++w) r += red[w];
  __syncthreads();
  return r;
}

// Dynamic shared memory: q[k_dim], acc[v_dim] floats, then kThreads probabilities and slots.
template <typename QT, typename CT>
__global__ void __launch_bounds__(kThreads) SimpleKernel(const PagedAttentionArgs a) {
  extern __shared__ float smem[];
  float* q_s = smem;
  float* acc_s = q_s + a.k_dim;
  float* p_s = acc_s + a.v_dim;
  // The slots follow the floats, rounded up to an even count so that they are 8-byte aligned.
  int64_t* slot_s = reinterpret_cast<int64_t*>(smem + ((a.k_dim + a.v_dim + kThreads + 1) & ~1));
  __shared__ float red[kWarps];

  const int64_t t = blockIdx.x / a.q_heads, h = blockIdx.x % a.q_heads;
  if (a.num_seqs == 0) {  // tokens without a sequence
    if (threadIdx.x == 0) SetError(a.error_flags, kErrorBlockId);
    return;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) CheckBatchEnds(a);
  // The sequence of token t: the last s with query_start[s] <= t.
  int64_t lo = 0, hi = a.num_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (a.query_start[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int64_t s = lo;
  const SeqInfo seq = LoadSeq(a, s);
  if (!seq.ok || t < seq.q_begin || t >= seq.q_begin + seq.q_len) {
    if (threadIdx.x == 0) SetError(a.error_flags, kErrorBlockId);
    return;
  }
  const int64_t kvh = h / (a.q_heads / a.kv_heads);
  const int64_t visible = seq.seq_len - seq.q_len + (t - seq.q_begin) + 1;
  const QT* q = static_cast<const QT*>(a.q) + (t * a.q_heads + h) * a.k_dim;
  const CT* k_cache = static_cast<const CT*>(a.k_cache);
  const CT* v_cache = static_cast<const CT*>(a.v_cache);

  for (int64_t d = threadIdx.x; d < a.k_dim; d += kThreads) q_s[d] = ToFloat(q[d]);
  for (int64_t d = threadIdx.x; d < a.v_dim; d += kThreads) acc_s[d] = 0.0f;
  __syncthreads();

  float m = -INFINITY, l = 0.0f;
  for (int64_t base = 0; base < visible; base += kThreads) {
    const int64_t p = base + threadIdx.x;
    float score = -INFINITY;
    int64_t slot = -1;
    if (p < visible) {
      slot = CacheSlot(a, s, p);
      if (slot >= 0) {
        const CT* k = k_cache + (slot * a.kv_heads + kvh) * a.k_dim;
        float dot = 0.0f;
        for (int64_t d = 0; d < a.k_dim; ++d) dot = fmaf(q_s[d], ToFloat(k[d]), dot);
        score = dot * a.scale;
      }
    }
    slot_s[threadIdx.x] = slot;
    const float m_new = fmaxf(m, BlockMax(score, red));
    const float prob = ExpShifted(score, m_new);
    p_s[threadIdx.x] = prob;
    const float alpha = ExpShifted(m, m_new);
    l = l * alpha + BlockSum(prob, red);  // BlockSum's barriers publish p_s and slot_s
    m = m_new;
    const int64_t count = min(static_cast<int64_t>(kThreads), visible - base);
    for (int64_t d = threadIdx.x; d < a.v_dim; d += kThreads) {
      float acc = acc_s[d] * alpha;
      for (int64_t j = 0; j < count; ++j) {
        if (slot_s[j] < 0) continue;
        acc = fmaf(p_s[j], ToFloat(v_cache[(slot_s[j] * a.kv_heads + kvh) * a.v_dim + d]), acc);
      }
      acc_s[d] = acc;
    }
    __syncthreads();  // p_s and slot_s are rewritten by the next chunk
  }
  QT* out = static_cast<QT*>(a.out) + (t * a.q_heads + h) * a.v_dim;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t d = threadIdx.x; d < a.v_dim; d += kThreads) out[d] = FromFloat<QT>(acc_s[d] * inv);
}

template <typename QT, typename CT>
cudaError_t Launch(const PagedAttentionArgs& a, cudaStream_t stream) {
  // As laid out in the kernel.
  const size_t floats = static_cast<size_t>(a.k_dim + a.v_dim + kThreads + 1) & ~size_t{1};
  const size_t smem = floats * sizeof(float) + kThreads * sizeof(int64_t);
  auto kernel = SimpleKernel<QT, CT>;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  kernel<<<static_cast<unsigned>(a.num_tokens * a.q_heads), kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSimple(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.q_dtype == DType::kF32 && a.cache_dtype == DType::kF32) {
    return Launch<float, float>(a, stream);
  }
  if (a.q_dtype == DType::kF32 && a.cache_dtype == DType::kBF16) {
    return Launch<float, __nv_bfloat16>(a, stream);
  }
  if (a.q_dtype == DType::kBF16 && a.cache_dtype == DType::kBF16) {
    return Launch<__nv_bfloat16, __nv_bfloat16>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace expertmesh::cuda::attention
