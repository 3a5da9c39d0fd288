// AVX-512F GEMM inner loops (the decode/streaming GEMM of cpu_linear.cc at 16 fp32 lanes). This
// file alone is compiled with -mavx512f -mfma; nothing here runs unless
// CpuSupports(CpuIsa::kAvx512). The other kernels of the table are the AVX2 ones: they are
// memory-bound or small, and the GEMM is where batched decode spends its time.
//
// Same structure as kernels_avx2.cc: weights widened from bf16 in registers, R weight rows x T
// tokens per micro-kernel, every token accumulated in the same order whatever T is (so a
// token's output does not depend on its neighbours). The lane order differs from the AVX2
// kernel, so results agree with it to fp32 rounding, not bit for bit.
#include <immintrin.h>

#include "common/dtype.h"
#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {
namespace {

inline __m512 LoadW(const uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
inline __m512 LoadW(const float* p) { return _mm512_loadu_ps(p); }
inline float ScalarW(uint16_t v) { return Bf16ToFloat(v); }
inline float ScalarW(float v) { return v; }

// 16 lanes summed as a fixed tree (halves, then quarters ...): deterministic.
inline float HorizontalSum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 t = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <int R, int T, typename W>
inline void MicroKernel(const float* x, int64_t ldx, int64_t k, const W* w, int64_t ldw, float* out,
                        int64_t ldo) {
  __m512 acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = LoadW(w + r * ldw + i);
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * ldx + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = HorizontalSum(acc[r][t]);
      for (int64_t j = i; j < k; ++j) sum += x[t * ldx + j] * ScalarW(w[r * ldw + j]);
      out[t * ldo + r] = sum;
    }
  }
}

// Tokens in groups of 6 (24 accumulators + 4 weight vectors + 1 token vector of the 32
// registers), then 4/3/2/1.
template <int R, typename W>
inline void RowStrip(const float* x, int64_t ldx, int64_t n, int64_t k, const W* w, int64_t ldw,
                     float* out, int64_t ldo) {
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

template <typename W>
void Gemm(const float* x, int64_t ldx, int64_t n, int64_t k, const W* w, int64_t ldw, int64_t rows,
          float* out, int64_t ldo) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) RowStrip<4>(x, ldx, n, k, w + r * ldw, ldw, out + r, ldo);
  for (; r < rows; ++r) RowStrip<1>(x, ldx, n, k, w + r * ldw, ldw, out + r, ldo);
}

void GemmBf16(const float* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w, int64_t ldw,
              int64_t rows, float* out, int64_t ldo) {
  Gemm(x, ldx, n, k, w, ldw, rows, out, ldo);
}
void GemmF32(const float* x, int64_t ldx, int64_t n, int64_t k, const float* w, int64_t ldw,
             int64_t rows, float* out, int64_t ldo) {
  Gemm(x, ldx, n, k, w, ldw, rows, out, ldo);
}

}  // namespace

const KernelTable& Avx512Kernels() {
  static const KernelTable table = [] {
    KernelTable t = Avx2Kernels();
    t.gemm_bf16 = GemmBf16;
    t.gemm_f32 = GemmF32;
    return t;
  }();
  return table;
}

}  // namespace expertmesh::kernels::cpu
