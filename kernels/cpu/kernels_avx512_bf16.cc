// The streaming GEMM with bf16 weights and bf16 activations on AVX512_BF16 (VDPBF16PS: 16 lanes,
// each adding the products of two adjacent bf16 pairs to an fp32 accumulator). Weights are used
// as stored, with no widening, and each instruction does two multiply-adds per lane, so
// batched bf16 decode and prefill do twice the work per instruction of the AVX-512F kernel.
// This file alone is compiled with -mavx512bf16; nothing here runs unless
// CpuSupports(CpuIsa::kAvx512Bf16).
#include <immintrin.h>

#include "common/dtype.h"
#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {
namespace {

inline __m512bh Load32(const uint16_t* p) {
  return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
}

inline float HorizontalSum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 t = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <int R, int T>
inline void MicroKernel(const uint16_t* x, int64_t ldx, int64_t k, const uint16_t* w, int64_t ldw,
                        float* out, int64_t ldo) {
  __m512 acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    __m512bh wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = Load32(w + r * ldw + i);
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = Load32(x + t * ldx + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = HorizontalSum(acc[r][t]);
      for (int64_t j = i; j < k; ++j) {
        sum += Bf16ToFloat(x[t * ldx + j]) * Bf16ToFloat(w[r * ldw + j]);
      }
      out[t * ldo + r] = sum;
    }
  }
}

template <int R>
inline void RowStrip(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w,
                     int64_t ldw, float* out, int64_t ldo) {
  int64_t t = 0;
  for (; t + 6 <= n; t += 6) MicroKernel<R, 6>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo);
  if (n - t == 5) {
    MicroKernel<R, 4>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo);
    t += 4;
  }
  for (; t + 4 <= n; t += 4) MicroKernel<R, 4>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo);
  if (n - t == 3) MicroKernel<R, 3>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo);
  if (n - t == 2) MicroKernel<R, 2>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo);
  if (n - t == 1) MicroKernel<R, 1>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo);
}

void GemmBf16XBf16(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w,
                   int64_t ldw, int64_t rows, float* out, int64_t ldo) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) RowStrip<4>(x, ldx, n, k, w + r * ldw, ldw, out + r, ldo);
  for (; r < rows; ++r) RowStrip<1>(x, ldx, n, k, w + r * ldw, ldw, out + r, ldo);
}

}  // namespace

const KernelTable& Avx512Bf16Kernels() {
  static const KernelTable table = [] {
    KernelTable t = Avx512Kernels();
    t.gemm_bf16_xbf16 = GemmBf16XBf16;
    return t;
  }();
  return table;
}

}  // namespace expertmesh::kernels::cpu
