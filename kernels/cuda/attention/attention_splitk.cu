// Split-K paged attention on CUDA cores, fp32 arithmetic: the decode kernel (all q heads of a
// kv head share each K/V tile), MLA's latent decode (k_cache == v_cache: each latent row is
// loaded once and serves the scores and the values) and the f32 / odd-dims path for any q_len.
//
// CTA (row tile, kv head, split): up to kRows query rows of one sequence -- row r is token
// r / group and q head kv_head * group + r % group, as in the CPU backend -- against the keys
// [split * split_tokens, (split + 1) * split_tokens) of the context. Keys go through shared
// memory T at a time: slots from the block table, the K (and V) rows as fp32, kRows x T scores,
// an online-softmax update per row, then O (in shared memory) += P V. With one split the CTA
// writes `out`; with more it writes (O, max, sum) partials to the workspace and a reduce kernel
// merges them.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/attention/attention_common.cuh"
#include "kernels/cuda/attention/attention_kernels.h"

namespace expertmesh::cuda::attention {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 16;                 // query rows per CTA
constexpr int kMaxSplits = 64;            // partials per row the reduce merges
constexpr int64_t kTargetCtas = 1024;     // enough CTAs to fill an H100/H200 several times over
constexpr int64_t kMinSplitTokens = 256;  // shorter splits cost more in partials than they gain
constexpr int kSplitAlign = 32;           // split boundaries are multiples of every tile size
constexpr size_t kMaxSmem = 200 * 1024;

struct SplitKParams {
  int splits;
  int64_t split_tokens;
  float* ws_o;   // [splits, num_tokens * q_heads, v_dim]
  float* ws_ml;  // [splits, num_tokens * q_heads, 2] (max, sum)
  bool vec_k;    // K rows load 16 bytes at a time (dims and pointers allow it)
  bool vec_v;
};

// T cache rows of `dim` elements (slots from slot_s; -1 gives zeros) into dst as fp32, row
// stride ld. With `vec`, 16-byte loads (dim a multiple of 16 / sizeof(CT), cache 16-byte
// aligned): fewer load instructions, more bytes in flight.
template <typename CT, int T>
__device__ __forceinline__ void LoadRows(const CT* cache, const int64_t* slot_s, int64_t kv_heads,
                                         int64_t kvh, int dim, bool vec, float* dst, int ld) {
  if (vec) {
    constexpr int kVec = 16 / sizeof(CT);
    const int chunks = dim / kVec;
    for (int x = threadIdx.x; x < T * chunks; x += kThreads) {
      const int jj = x / chunks, c = x % chunks;
      const int64_t slot = slot_s[jj];
      float* d = dst + jj * ld + c * kVec;
      if (slot >= 0) {
        const uint4 raw =
            *reinterpret_cast<const uint4*>(cache + (slot * kv_heads + kvh) * dim + c * kVec);
        const CT* e = reinterpret_cast<const CT*>(&raw);
#pragma unroll
        for (int i = 0; i < kVec; ++i) d[i] = ToFloat(e[i]);
      } else {
#pragma unroll
        for (int i = 0; i < kVec; ++i) d[i] = 0.0f;
      }
    }
  } else {
    for (int x = threadIdx.x; x < T * dim; x += kThreads) {
      const int jj = x / dim, d = x % dim;
      const int64_t slot = slot_s[jj];
      dst[jj * ld + d] = slot >= 0 ? ToFloat(cache[(slot * kv_heads + kvh) * dim + d]) : 0.0f;
    }
  }
}

__host__ __device__ bool KvSame(const PagedAttentionArgs& a) {
  return a.k_cache == a.v_cache && a.k_dim == a.v_dim;
}

// Shared memory of the kernel below, in its order: slots (int64), then floats.
size_t SmemBytes(const PagedAttentionArgs& a, int keys) {
  const size_t floats = kRows * a.k_dim + kRows * a.v_dim + keys * (a.k_dim + 1) +
                        (KvSame(a) ? 0 : keys * (a.v_dim + 1)) + kRows * keys + 3 * kRows;
  return keys * sizeof(int64_t) + floats * sizeof(float);
}

template <typename QT, typename CT, int T>
__global__ void __launch_bounds__(kThreads)
    SplitKKernel(const PagedAttentionArgs a, const SplitKParams sp) {
  constexpr int kGroups = kThreads / T;            // row groups of the score phase
  constexpr int kRowsPerThread = kRows / kGroups;  // score accumulators per thread
  static_assert(kRowsPerThread >= 1 && kThreads % T == 0 && T <= 32);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int scratch[2];
  const bool kv_same = KvSame(a);
  const int dk = static_cast<int>(a.k_dim), dv = static_cast<int>(a.v_dim);
  const int ldk = dk + 1, ldv = kv_same ? ldk : dv + 1;  // odd strides: no bank conflicts
  int64_t* slot_s = reinterpret_cast<int64_t*>(smem_raw);
  float* q_s = reinterpret_cast<float*>(slot_s + T);
  float* o_s = q_s + kRows * dk;
  float* k_s = o_s + kRows * dv;
  float* v_s = kv_same ? k_s : k_s + T * ldk;
  float* p_s = v_s + (kv_same ? T * ldk : T * ldv);
  float* m_s = p_s + kRows * T;
  float* l_s = m_s + kRows;
  float* alpha_s = l_s + kRows;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && tid == 0) CheckBatchEnds(a);
  const int64_t group = a.q_heads / a.kv_heads, kvh = blockIdx.y;
  int64_t s, row0;
  FindTile(a, group, kRows, blockIdx.x, scratch, &s, &row0);
  if (s < 0) return;
  const SeqInfo seq = LoadSeq(a, s);
  if (!seq.ok) {
    if (tid == 0) SetError(a.error_flags, kErrorBlockId);
    return;
  }
  const int nrows = static_cast<int>(min(static_cast<int64_t>(kRows), seq.q_len * group - row0));
  const int64_t first_pos = seq.seq_len - seq.q_len;  // position of the sequence's query 0
  const int64_t kv_end = first_pos + (row0 + nrows - 1) / group + 1;  // keys of the last row
  const int64_t k_begin = blockIdx.z * sp.split_tokens;
  const int64_t k_stop = min(kv_end, k_begin + sp.split_tokens);

  // The q row and output row of tile row r.
  auto qrow = [&](int r) {
    const int64_t row = row0 + r;
    return (seq.q_begin + row / group) * a.q_heads + kvh * group + row % group;
  };
  const QT* q = static_cast<const QT*>(a.q);
  for (int x = tid; x < kRows * dk; x += kThreads) {
    const int r = x / dk, d = x % dk;
    q_s[x] = r < nrows ? ToFloat(q[qrow(r) * dk + d]) : 0.0f;
  }
  for (int x = tid; x < kRows * dv; x += kThreads) o_s[x] = 0.0f;
  if (tid < kRows) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }

  const CT* k_cache = static_cast<const CT*>(a.k_cache);
  const CT* v_cache = static_cast<const CT*>(a.v_cache);
  const int j = tid % T, rg = tid / T;  // this thread's key and row group in the score phase
  for (int64_t key0 = k_begin; key0 < k_stop; key0 += T) {
    __syncthreads();  // the previous tile's readers are done (and the set-up above is visible)
    if (tid < T) slot_s[tid] = key0 + tid < k_stop ? CacheSlot(a, s, key0 + tid) : -1;
    __syncthreads();
    LoadRows<CT, T>(k_cache, slot_s, a.kv_heads, kvh, dk, sp.vec_k, k_s, ldk);
    if (!kv_same) LoadRows<CT, T>(v_cache, slot_s, a.kv_heads, kvh, dv, sp.vec_v, v_s, ldv);
    __syncthreads();

    // Scores: thread (j, rg) takes key j against rows rg, rg + kGroups, ...
    float acc[kRowsPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) acc[i] = 0.0f;
    if (rg < nrows) {
      // Rows past nrows are zeros; skipping them (warp-uniform when T = 32) saves the FMAs of
      // a decode tile with fewer rows than kRows.
      const int live = (nrows - rg + kGroups - 1) / kGroups;
      const float* kr = k_s + j * ldk;
      for (int d = 0; d < dk; ++d) {
        const float kv = kr[d];
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i) {
          if (i < live) acc[i] = fmaf(q_s[(rg + kGroups * i) * dk + d], kv, acc[i]);
        }
      }
    }
    const int64_t key = key0 + j;
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int r = rg + kGroups * i;
      if (r < nrows) {
        const int64_t pos = first_pos + (row0 + r) / group;
        const bool visible = key < k_stop && key <= pos && slot_s[j] >= 0;
        p_s[r * T + j] = visible ? acc[i] * a.scale : -INFINITY;
      }
    }
    __syncthreads();

    // Online softmax, a warp per row.
    for (int r = warp; r < nrows; r += kWarps) {
      const float v = lane < T ? p_s[r * T + lane] : -INFINITY;
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, WarpMax(v));
      const float p = ExpShifted(v, m_new);
      if (lane < T) p_s[r * T + lane] = p;
      const float sum = WarpSum(p);
      if (lane == 0) {
        const float alpha = ExpShifted(m_old, m_new);
        alpha_s[r] = alpha;
        l_s[r] = l_s[r] * alpha + sum;
        m_s[r] = m_new;
      }
    }
    __syncthreads();

    // O = O * alpha + P V.
    for (int x = tid; x < nrows * dv; x += kThreads) {
      const int r = x / dv, d = x % dv;
      float o = o_s[x] * alpha_s[r];
      const float* pr = p_s + r * T;
#pragma unroll 8
      for (int jj = 0; jj < T; ++jj) o = fmaf(pr[jj], v_s[jj * ldv + d], o);
      o_s[x] = o;
    }
  }
  __syncthreads();

  const int64_t num_q_rows = a.num_tokens * a.q_heads;
  for (int x = tid; x < nrows * dv; x += kThreads) {
    const int r = x / dv, d = x % dv;
    const int64_t row = qrow(r);
    if (sp.splits == 1) {
      const float l = l_s[r];
      static_cast<QT*>(a.out)[row * dv + d] = FromFloat<QT>(l > 0.0f ? o_s[x] / l : 0.0f);
    } else {
      sp.ws_o[(blockIdx.z * num_q_rows + row) * dv + d] = o_s[x];
    }
  }
  if (sp.splits > 1 && tid < nrows) {
    const int64_t row = qrow(tid);
    sp.ws_ml[(blockIdx.z * num_q_rows + row) * 2] = m_s[tid];
    sp.ws_ml[(blockIdx.z * num_q_rows + row) * 2 + 1] = l_s[tid];
  }
}

// Merges the partials of one q row (CTA per row): out = sum_z w_z O_z / sum_z w_z l_z with
// w_z = exp(m_z - max m).
template <typename QT>
__global__ void __launch_bounds__(kThreads)
    ReduceKernel(const PagedAttentionArgs a, const SplitKParams sp) {
  __shared__ float w_s[kMaxSplits];
  __shared__ float inv_s;
  const int64_t row = blockIdx.x, num_q_rows = a.num_tokens * a.q_heads;
  if (threadIdx.x == 0) {
    float m = -INFINITY;
    for (int z = 0; z < sp.splits; ++z) {
      const float* ml = sp.ws_ml + (z * num_q_rows + row) * 2;
      if (ml[1] > 0.0f) m = fmaxf(m, ml[0]);
    }
    float l = 0.0f;
    for (int z = 0; z < sp.splits; ++z) {
      const float* ml = sp.ws_ml + (z * num_q_rows + row) * 2;
      w_s[z] = ml[1] > 0.0f ? expf(ml[0] - m) : 0.0f;
      l += w_s[z] * (ml[1] > 0.0f ? ml[1] : 0.0f);
    }
    inv_s = l > 0.0f ? 1.0f / l : 0.0f;
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < a.v_dim; d += kThreads) {
    float o = 0.0f;
    for (int z = 0; z < sp.splits; ++z) {
      if (w_s[z] != 0.0f) o = fmaf(w_s[z], sp.ws_o[(z * num_q_rows + row) * a.v_dim + d], o);
    }
    static_cast<QT*>(a.out)[row * a.v_dim + d] = FromFloat<QT>(o * inv_s);
  }
}

template <typename QT, typename CT, int T>
cudaError_t Launch(const PagedAttentionArgs& a, const SplitKPlan& plan, cudaStream_t stream) {
  SplitKParams sp;
  sp.splits = plan.splits;
  sp.split_tokens = plan.split_tokens;
  constexpr int kVec = 16 / sizeof(CT);
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  sp.vec_k = a.k_dim % kVec == 0 && aligned(a.k_cache);
  sp.vec_v = a.v_dim % kVec == 0 && aligned(a.v_cache);
  const int64_t num_q_rows = a.num_tokens * a.q_heads;
  sp.ws_o = static_cast<float*>(a.workspace);
  sp.ws_ml = sp.ws_o == nullptr ? nullptr : sp.ws_o + plan.splits * num_q_rows * a.v_dim;
  auto kernel = SplitKKernel<QT, CT, T>;
  if (plan.smem_bytes > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(plan.smem_bytes));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(static_cast<unsigned>(plan.num_tiles), static_cast<unsigned>(a.kv_heads),
                  static_cast<unsigned>(plan.splits));
  kernel<<<grid, kThreads, plan.smem_bytes, stream>>>(a, sp);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || plan.splits == 1) return e;
  ReduceKernel<QT><<<static_cast<unsigned>(num_q_rows), kThreads, 0, stream>>>(a, sp);
  return cudaGetLastError();
}

template <typename QT, typename CT>
cudaError_t LaunchTyped(const PagedAttentionArgs& a, const SplitKPlan& plan, cudaStream_t stream) {
  switch (plan.keys_per_tile) {
    case 32:
      return Launch<QT, CT, 32>(a, plan, stream);
    case 16:
      return Launch<QT, CT, 16>(a, plan, stream);
    case 8:
      return Launch<QT, CT, 8>(a, plan, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int64_t TileBound(const PagedAttentionArgs& a, int rows_per_tile) {
  const int64_t group = a.q_heads / a.kv_heads;
  return (a.num_tokens * group + rows_per_tile - 1) / rows_per_tile + a.num_seqs;
}

bool PlanSplitK(const PagedAttentionArgs& a, SplitKPlan* plan) {
  plan->rows_per_tile = kRows;
  plan->keys_per_tile = 0;
  for (int keys : {32, 16, 8}) {
    if (SmemBytes(a, keys) <= kMaxSmem) {
      plan->keys_per_tile = keys;
      plan->smem_bytes = SmemBytes(a, keys);
      break;
    }
  }
  if (plan->keys_per_tile == 0) return false;
  plan->num_tiles = TileBound(a, kRows);
  // Split the context only as far as it takes to fill the GPU, and never below a few hundred
  // keys per split. Independent of the tile size, so that the workspace size needs no pointers.
  const int64_t ctas = std::max<int64_t>(1, plan->num_tiles * a.kv_heads);
  const int64_t max_ctx = std::max<int64_t>(1, a.max_blocks_per_seq * a.block_size);
  int64_t splits =
      std::min((kTargetCtas + ctas - 1) / ctas, (max_ctx + kMinSplitTokens - 1) / kMinSplitTokens);
  splits = std::clamp<int64_t>(splits, 1, kMaxSplits);
  const int64_t per_split = (max_ctx + splits - 1) / splits;
  plan->split_tokens = (per_split + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  plan->splits = static_cast<int>((max_ctx + plan->split_tokens - 1) / plan->split_tokens);
  plan->workspace_bytes = plan->splits == 1 ? 0
                                            : static_cast<size_t>(plan->splits) * a.num_tokens *
                                                  a.q_heads * (a.v_dim + 2) * sizeof(float);
  return true;
}

cudaError_t LaunchSplitK(const PagedAttentionArgs& a, const SplitKPlan& plan, cudaStream_t stream) {
  if (a.q_dtype == DType::kF32 && a.cache_dtype == DType::kF32) {
    return LaunchTyped<float, float>(a, plan, stream);
  }
  if (a.q_dtype == DType::kF32 && a.cache_dtype == DType::kBF16) {
    return LaunchTyped<float, __nv_bfloat16>(a, plan, stream);
  }
  if (a.q_dtype == DType::kBF16 && a.cache_dtype == DType::kBF16) {
    return LaunchTyped<__nv_bfloat16, __nv_bfloat16>(a, plan, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace expertmesh::cuda::attention
