// The streaming (decode) GEMM's loops, written once for every instruction set. Each
// kernels_<isa>.cc, compiled with that set's flags, instantiates them with a SIMD policy:
//   struct Policy {
//     using Acc = ...;                    // fp32 accumulator vector
//     static constexpr int kStep = ...;   // elements of k per step
//     static Acc Zero();
//     template <typename W> static auto LoadW(const W* w);     // kStep weights
//     template <typename X> static auto LoadX(const X* x);     // kStep activations
//     static Acc Madd(Acc acc, WVec w, XVec x);                 // acc += w * x, per lane
//     static float Sum(Acc acc);                                 // fixed lane order
//   };
// R weight rows x T tokens per micro-kernel; tokens go in groups of kMaxTokens, then smaller
// ones. Every token's sum runs in the same order whatever its group, so a token's output does
// not depend on its neighbours (batching invariance).
//
// While a strip of R rows is multiplied, the next strip's rows are prefetched at the same
// offsets, so by the time it starts its lines are on the way. The hardware prefetcher alone
// falls short here: it follows each row separately and restarts at every 4 KiB page, and a
// decode GEMM is nothing but short rows read once (measured on Zen 5: a one-token GEMM with
// this prefetch reads ~15% closer to the plain streaming-read bandwidth).
#ifndef EXPERTMESH_KERNELS_CPU_STREAMING_GEMM_H_
#define EXPERTMESH_KERNELS_CPU_STREAMING_GEMM_H_

#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::kernels::cpu::streaming {

inline float ToFloat(uint16_t bf16) { return Bf16ToFloat(bf16); }
inline float ToFloat(float v) { return v; }

// `next` (nullptr: none) is the strip to prefetch, with the same row stride as w.
template <typename P, int R, int T, typename X, typename W>
inline void MicroKernel(const X* x, int64_t ldx, int64_t k, const W* w, int64_t ldw, float* out,
                        int64_t ldo, const W* next) {
  // The loops over R and T must unroll fully so the accumulators live in registers.
  typename P::Acc acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) acc[r][t] = P::Zero();
  }
  int64_t i = 0;
  for (; i + P::kStep <= k; i += P::kStep) {
    if (next != nullptr) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) __builtin_prefetch(next + r * ldw + i, 0, 3);
    }
    decltype(P::LoadW(w)) wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = P::LoadW(w + r * ldw + i);
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const auto xv = P::LoadX(x + t * ldx + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][t] = P::Madd(acc[r][t], wv[r], xv);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = P::Sum(acc[r][t]);
      for (int64_t j = i; j < k; ++j) sum += ToFloat(x[t * ldx + j]) * ToFloat(w[r * ldw + j]);
      out[t * ldo + r] = sum;
    }
  }
}

// One strip of R rows over all n tokens: groups of kMaxTokens (3 or 6), then the rest. Only the
// first group prefetches `next`: the later ones find this strip's rows in cache already.
template <typename P, int R, int kMaxTokens, typename X, typename W>
inline void RowStrip(const X* x, int64_t ldx, int64_t n, int64_t k, const W* w, int64_t ldw,
                     float* out, int64_t ldo, const W* next) {
  static_assert(kMaxTokens == 3 || kMaxTokens == 6);
  int64_t t = 0;
  for (; t + kMaxTokens <= n; t += kMaxTokens) {
    MicroKernel<P, R, kMaxTokens>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo, next);
    next = nullptr;
  }
  if constexpr (kMaxTokens == 6) {
    if (n - t >= 4) {
      MicroKernel<P, R, 4>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo, next);
      t += 4;
      next = nullptr;
    }
  }
  if (n - t == 3) MicroKernel<P, R, 3>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo, next);
  if (n - t == 2) MicroKernel<P, R, 2>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo, next);
  if (n - t == 1) MicroKernel<P, R, 1>(x + t * ldx, ldx, k, w, ldw, out + t * ldo, ldo, next);
}

// out[t * ldo + r] = sum_i x[t * ldx + i] * w[r * ldw + i] (see KernelTable::gemm_bf16).
template <typename P, int kMaxTokens, typename X, typename W>
void Gemm(const X* x, int64_t ldx, int64_t n, int64_t k, const W* w, int64_t ldw, int64_t rows,
          float* out, int64_t ldo) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    // The next strip, while it is whole; the rows after the last one are not ours to fetch.
    const W* next = r + 8 <= rows ? w + (r + 4) * ldw : nullptr;
    RowStrip<P, 4, kMaxTokens>(x, ldx, n, k, w + r * ldw, ldw, out + r, ldo, next);
  }
  for (; r < rows; ++r) {
    RowStrip<P, 1, kMaxTokens>(x, ldx, n, k, w + r * ldw, ldw, out + r, ldo,
                               static_cast<const W*>(nullptr));
  }
}

}  // namespace expertmesh::kernels::cpu::streaming

#endif  // EXPERTMESH_KERNELS_CPU_STREAMING_GEMM_H_
