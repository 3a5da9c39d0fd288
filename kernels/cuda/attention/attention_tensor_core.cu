// Flash-attention style paged attention on tensor cores (bf16 q and cache, fp32 accumulation):
// the prefill and chunked-prefill path.
//
// CTA (row tile, kv head): kBM = 64 query rows of one sequence -- row r is token r / group and
// q head kv_head * group + r % group, so the q heads of a kv head share every K/V tile -- held
// in shared memory; the visible keys go by kBN = 64 through the block table (cp.async, zero
// fill past the context), K of the next tile loading while P V runs on this one. Each of the 4
// warps owns 16 rows: S = Q K^T with mma.sync m16n8k16, the causal mask relative to each row's
// absolute position, online softmax in fp32 (log2 domain), P rounded to bf16 as the A operand
// of O += P V straight from the S registers.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/attention/attention_common.cuh"
#include "kernels/cuda/attention/attention_kernels.h"

namespace expertmesh::cuda::attention {
namespace {

constexpr int kThreads = 128;
constexpr int kBM = 64;  // query rows per CTA, 16 per warp
constexpr int kBN = 64;  // keys per K/V tile
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zeros when !valid (nothing is read then).
// The cp.async statements carry a "memory" clobber, as kernels/cuda/gemm/moe_grouped_gemm_mma.cu's
// do: the copy writes shared memory behind the compiler's back, so without it the compiler may
// keep a plain C++ read of the destination in a register across the wait (or move it above),
// or sink a plain store to it below the copy. Today every shared read here is an ldmatrix asm,
// which volatile asm ordering already keeps after the wait; the clobber keeps that true for
// any C++ access added later.
__device__ __forceinline__ void CpAsync16(void* dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(dst)), "l"(src),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void Ldmatrix4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}
__device__ __forceinline__ void Ldmatrix4Trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}

// c += a (16x16 bf16, row) * b (16x8 bf16, col), fp32 accumulators.
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low half
  return *reinterpret_cast<uint32_t*>(&v);
}

template <int DK, int DV>
struct Layout {
  static constexpr int kLdk = DK + 8;  // +16 bytes per row: conflict-free ldmatrix
  static constexpr int kLdv = DV + 8;
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + kBM * kLdk;
  static constexpr size_t kV = kK + kBN * kLdk;
  static constexpr size_t kElems = kV + kBN * kLdv;
  static constexpr size_t kBytes = kElems * sizeof(__nv_bfloat16);
};

// Keys [tile * kBN, +kBN) of sequence s (dims DIM) into dst (row stride ld), zeros past kv_len
// and for bad block ids (flagged).
template <int DIM>
__device__ __forceinline__ void LoadKv(const PagedAttentionArgs& a, const __nv_bfloat16* cache,
                                       int64_t s, int64_t kvh, int64_t tile, int64_t kv_len,
                                       __nv_bfloat16* dst, int ld) {
  constexpr int kChunks = DIM / 8;
  for (int c = threadIdx.x; c < kBN * kChunks; c += kThreads) {
    const int j = c / kChunks, ch = c % kChunks;
    const int64_t pos = tile * kBN + j;
    const __nv_bfloat16* src = cache;
    bool valid = false;
    if (pos < kv_len) {
      const int64_t slot = CacheSlot(a, s, pos);
      if (slot >= 0) {
        valid = true;
        src = cache + (slot * a.kv_heads + kvh) * DIM + ch * 8;
      }
    }
    CpAsync16(dst + j * ld + ch * 8, src, valid);
  }
}

template <int DK, int DV>
__global__ void __launch_bounds__(kThreads) TensorCoreKernel(const PagedAttentionArgs a) {
  using L = Layout<DK, DV>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int scratch[2];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* q_s = smem + L::kQ;
  __nv_bfloat16* k_s = smem + L::kK;
  __nv_bfloat16* v_s = smem + L::kV;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, tig = lane % 4;
  if (blockIdx.x == 0 && blockIdx.y == 0 && tid == 0) CheckBatchEnds(a);
  const int64_t group = a.q_heads / a.kv_heads, kvh = blockIdx.y;
  int64_t s, row0;
  FindTile(a, group, kBM, blockIdx.x, scratch, &s, &row0);
  if (s < 0) return;
  const SeqInfo seq = LoadSeq(a, s);
  if (!seq.ok) {
    if (tid == 0) SetError(a.error_flags, kErrorBlockId);
    return;
  }
  const int nrows = static_cast<int>(min(static_cast<int64_t>(kBM), seq.q_len * group - row0));
  const int64_t first_pos = seq.seq_len - seq.q_len;
  const int64_t kv_len = first_pos + (row0 + nrows - 1) / group + 1;
  const int64_t num_tiles = (kv_len + kBN - 1) / kBN;
  auto qrow = [&](int r) {
    const int64_t row = row0 + r;
    return (seq.q_begin + row / group) * a.q_heads + kvh * group + row % group;
  };

  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(a.q);
  const __nv_bfloat16* k_cache = static_cast<const __nv_bfloat16*>(a.k_cache);
  const __nv_bfloat16* v_cache = static_cast<const __nv_bfloat16*>(a.v_cache);
  constexpr int kQChunks = DK / 8;
  for (int c = tid; c < kBM * kQChunks; c += kThreads) {
    const int r = c / kQChunks, ch = c % kQChunks;
    const bool valid = r < nrows;
    CpAsync16(q_s + r * L::kLdk + ch * 8, valid ? q + qrow(r) * DK + ch * 8 : q, valid);
  }
  LoadKv<DK>(a, k_cache, s, kvh, 0, kv_len, k_s, L::kLdk);
  CpAsyncCommit();

  // This thread's rows of the warp's 16: g and g + 8 (index i = 0, 1).
  const int r_lo = warp * 16 + g;
  int64_t pos_row[2];
  bool row_ok[2];
  for (int i = 0; i < 2; ++i) {
    const int r = r_lo + 8 * i;
    row_ok[i] = r < nrows;
    pos_row[i] = first_pos + (row0 + r) / group;
  }
  const float scale_log2 = a.scale * kLog2e;
  float o[DV / 8][4];
#pragma unroll
  for (int dn = 0; dn < DV / 8; ++dn) {
    o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  }
  float m_row[2] = {-INFINITY, -INFINITY};
  float l_row[2] = {0.0f, 0.0f};  // this thread's part of the row sums (quad-reduced at the end)

  for (int64_t t = 0; t < num_tiles; ++t) {
    LoadKv<DV>(a, v_cache, s, kvh, t, kv_len, v_s, L::kLdv);
    CpAsyncCommit();
    CpAsyncWait<1>();  // Q and K(t) have landed
    __syncthreads();

    float sc[kBN / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < DK / 16; ++kk) {
      uint32_t qa[4];
      Ldmatrix4(qa, q_s + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * L::kLdk + kk * 16 +
                        (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        uint32_t kb[4];
        Ldmatrix4(kb, k_s + (np * 16 + (lane & 7) + (lane >> 4) * 8) * L::kLdk + kk * 16 +
                          ((lane >> 3) & 1) * 8);
        Mma(sc[2 * np], qa, kb[0], kb[1]);
        Mma(sc[2 * np + 1], qa, kb[2], kb[3]);
      }
    }

    // Causal mask and online softmax; element e of n-tile nt is row g + 8 * (e / 2), key
    // nt * 8 + 2 * tig + e % 2.
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e / 2;
        const int64_t key = t * kBN + nt * 8 + 2 * tig + e % 2;
        const bool visible = row_ok[i] && key <= pos_row[i];
        sc[nt][e] = visible ? sc[nt][e] * scale_log2 : -INFINITY;
        mx[i] = fmaxf(mx[i], sc[nt][e]);
      }
    }
    float alpha[2], m_use[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float m_new = fmaxf(m_row[i], mx[i]);
      m_use[i] = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet
      alpha[i] = exp2f(m_row[i] - m_use[i]);
      m_row[i] = m_new;
      l_row[i] *= alpha[i];
    }
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e / 2;
        sc[nt][e] = exp2f(sc[nt][e] - m_use[i]);
        l_row[i] += sc[nt][e];
      }
    }
#pragma unroll
    for (int dn = 0; dn < DV / 8; ++dn) {
      o[dn][0] *= alpha[0];
      o[dn][1] *= alpha[0];
      o[dn][2] *= alpha[1];
      o[dn][3] *= alpha[1];
    }

    __syncthreads();  // every warp is done with K(t)
    if (t + 1 < num_tiles) {
      LoadKv<DK>(a, k_cache, s, kvh, t + 1, kv_len, k_s, L::kLdk);
      CpAsyncCommit();
      CpAsyncWait<1>();  // V(t) has landed; K(t + 1) may still be in flight
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();

#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = PackBf16(sc[2 * kk][0], sc[2 * kk][1]);
      pa[1] = PackBf16(sc[2 * kk][2], sc[2 * kk][3]);
      pa[2] = PackBf16(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
      pa[3] = PackBf16(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < DV / 16; ++dp) {
        uint32_t vb[4];
        Ldmatrix4Trans(vb, v_s + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * L::kLdv +
                               dp * 16 + (lane >> 4) * 8);
        Mma(o[2 * dp], pa, vb[0], vb[1]);
        Mma(o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // every warp is done with V(t) before the next tile overwrites it
  }

  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float l = l_row[i];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    if (!row_ok[i]) continue;
    __nv_bfloat16* dst = out + qrow(r_lo + 8 * i) * DV + 2 * tig;
#pragma unroll
    for (int dn = 0; dn < DV / 8; ++dn) {
      *reinterpret_cast<__nv_bfloat162*>(dst + dn * 8) =
          __floats2bfloat162_rn(o[dn][2 * i] * inv, o[dn][2 * i + 1] * inv);
    }
  }
}

template <int DK, int DV>
cudaError_t Launch(const PagedAttentionArgs& a, cudaStream_t stream) {
  auto kernel = TensorCoreKernel<DK, DV>;
  constexpr size_t kSmem = Layout<DK, DV>::kBytes;
  if (kSmem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(kSmem));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(static_cast<unsigned>(TileBound(a, kBM)), static_cast<unsigned>(a.kv_heads));
  kernel<<<grid, kThreads, kSmem, stream>>>(a);
  return cudaGetLastError();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool TensorCoreSupports(const PagedAttentionArgs& a) {
  if (a.q_dtype != DType::kBF16 || a.cache_dtype != DType::kBF16) return false;
  const bool dims = (a.k_dim == 64 && a.v_dim == 64) || (a.k_dim == 128 && a.v_dim == 128) ||
                    (a.k_dim == 192 && a.v_dim == 128);
  return dims && Aligned16(a.q) && Aligned16(a.k_cache) && Aligned16(a.v_cache) && Aligned16(a.out);
}

cudaError_t LaunchTensorCore(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (!TensorCoreSupports(a)) return cudaErrorInvalidValue;
  if (a.k_dim == 64) return Launch<64, 64>(a, stream);
  if (a.k_dim == 128) return Launch<128, 128>(a, stream);
  return Launch<192, 128>(a, stream);
}

}  // namespace expertmesh::cuda::attention
