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
//     // optional: Sum of a, b, c, d into out[0..3], each in Sum's order (the same bits)
//     static void Sum4(Acc a, Acc b, Acc c, Acc d, float* out);
//     // fp8 weights only:
//     static WVec LoadW8(const uint8_t* w);  // kStep e4m3 values, each times 2^-120 (exact)
//     static float TailW8(uint8_t w);        // what LoadW8 makes of one value
//     static WVec Mul(WVec w, float s);      // w * s, per lane
//     // optional: a tail weight's value where ToFloat does not give it (W = uint8_t), and what
//     // becomes of a finished sum before it is stored
//     static float TailW(W w);
//     static float Finish(float sum);
//     // q4 weights only (kernels/q4_layout.h):
//     // kStep values from `offset` of a q4 unit with half width `half` (kernels/q4_layout.h)
//     static WVec LoadQ4(const uint8_t* unit, int64_t half, int64_t offset);
//     static WVec Dequant(WVec q, float zero, float scale);  // (q - zero) * scale, per lane
//   };
// R weight rows x T tokens per micro-kernel; tokens go in groups of at most kMaxTokens
// (ForTokenGroups). Every token's sum runs in the same order whatever its group, so a token's
// output does not depend on its neighbours (batching invariance).
//
// While a strip of R rows is multiplied, a later strip's rows are prefetched, so by the time it
// starts its lines are on the way. The hardware prefetcher alone falls short here: it follows
// each row separately and restarts at every 4 KiB page, and a decode GEMM is nothing but short
// rows read once (measured on Zen 5: a one-token GEMM with this prefetch reads ~15% closer to
// the plain streaming-read bandwidth). The lines go into the L1 or the L2 as
// StreamingPrefetchLevel (cpu_features.h) says. Which strip, and which groups of tokens prefetch
// it: see Gemm (the fp8 and q4 loops still prefetch the next strip from their first token group).
#ifndef EXPERTMESH_KERNELS_CPU_STREAMING_GEMM_H_
#define EXPERTMESH_KERNELS_CPU_STREAMING_GEMM_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/q4_layout.h"

namespace expertmesh::kernels::cpu::streaming {

// Prefetches the line at p for reading, into the level StreamingPrefetchLevel() chose.
inline const bool kPrefetchIntoL2 = StreamingPrefetchLevel() == PrefetchLevel::kL2;
inline void PrefetchLine(const void* p) {
  if (kPrefetchIntoL2) {
    __builtin_prefetch(p, 0, 2);
  } else {
    __builtin_prefetch(p, 0, 3);
  }
}

inline float ToFloat(uint16_t bf16) { return Bf16ToFloat(bf16); }
inline float ToFloat(float v) { return v; }

// The lines of a later strip that one micro-kernel call prefetches while it runs: `lines` cache
// lines of each of its rows (ldw elements apart) from `at` on, one line of every row each `every`
// steps of k (lines == 0: none).
template <typename W>
struct StripPrefetch {
  const W* at = nullptr;
  int64_t lines = 0;
  int64_t every = 1;
};

// Token group `group` of `groups`' share of the prefetch of a strip whose rows start at `strip`
// (`lines` cache lines each): a contiguous part of every row, its lines spread evenly over the
// group's `steps` steps of k.
template <typename W>
inline StripPrefetch<W> GroupShareOf(const W* strip, int64_t lines, int64_t steps, int64_t group,
                                     int64_t groups) {
  constexpr int64_t kLine = 64 / sizeof(W);
  const int64_t first = lines * group / groups, last = lines * (group + 1) / groups;
  return {.at = strip + first * kLine,
          .lines = last - first,
          .every = std::max<int64_t>(1, steps / std::max<int64_t>(1, last - first))};
}

template <typename P, int R, int T, typename X, typename W>
inline void MicroKernel(const X* x, int64_t ldx, int64_t k, const W* w, int64_t ldw, float* out,
                        int64_t ldo, StripPrefetch<W> prefetch) {
  // The loops over R and T must unroll fully so the accumulators live in registers.
  typename P::Acc acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) acc[r][t] = P::Zero();
  }
  constexpr int64_t kLine = 64 / sizeof(W);
  int64_t countdown = 1;
  int64_t i = 0;
  for (; i + P::kStep <= k; i += P::kStep) {
    if (prefetch.lines > 0 && --countdown == 0) {
      countdown = prefetch.every;
      --prefetch.lines;
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) PrefetchLine(prefetch.at + r * ldw);
      prefetch.at += kLine;
    }
    // The T activation vectors first, then one weight row at a time: R x T accumulators, T
    // activations and one weight in registers (AVX2: 12 + 3 + 1 of 16). Holding all R weights
    // instead needed 17 there, and the accumulator GCC spilled to the stack put a store-to-load
    // round trip into every step of its chain (82% of batch-32 decode was this loop, stalled
    // on that chain). Where a policy needs a register more (AVX2's shuffle mask), GCC reads an
    // activation from memory at each use instead, which sits on no chain. Each accumulator sees
    // the same operations in the same order either way.
    decltype(P::LoadX(x)) xv[T];
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) xv[t] = P::LoadX(x + t * ldx + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const auto wv = P::LoadW(w + r * ldw + i);
#pragma GCC unroll 6
      for (int t = 0; t < T; ++t) acc[r][t] = P::Madd(acc[r][t], wv, xv[t]);
    }
  }
  // A token's 4 row sums in one go where the policy can (P::Sum4: the same tree as P::Sum for
  // each, so the same bits, in about half the shuffles and adds): with k = 384 (an expert's
  // down_proj) a 4 x 6 micro-kernel has only 12 steps of k for its 24 lane sums (one Zen 4 core,
  // fp8 from its L1: 144 -> 161 GFLOP/s). The AVX-512 families have one; AVX2 had one too and
  // lost: one token through a 2048 x 16384 bf16 weight took 2.37 -> 3.14 ms (one core, medians
  // of 6 alternated runs), as GCC compiled the 4 x 1 kernel around it.
  float sums[R][T];
  if constexpr (R == 4 &&
                requires(float* s) { P::Sum4(acc[0][0], acc[1][0], acc[2][0], acc[3][0], s); }) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      alignas(16) float four[4];
      P::Sum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t], four);
      for (int r = 0; r < R; ++r) sums[r][t] = four[r];
    }
  } else {
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) sums[r][t] = P::Sum(acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = sums[r][t];
      for (int64_t j = i; j < k; ++j) {
        if constexpr (requires { P::TailW(w[0]); }) {
          sum += ToFloat(x[t * ldx + j]) * P::TailW(w[r * ldw + j]);
        } else {
          sum += ToFloat(x[t * ldx + j]) * ToFloat(w[r * ldw + j]);
        }
      }
      if constexpr (requires { P::Finish(sum); }) sum = P::Finish(sum);
      out[t * ldo + r] = sum;
    }
  }
}

// Calls group.template operator()<T>(t) for the token groups of n tokens: the fewest groups of
// at most kMaxTokens (3 or 6), as even as they come (sizes differing by at most one, the larger
// first). A group's weight loads (and, for fp8 and q4, their widening) are shared by its tokens,
// so a small last group is the dearest per token: one Zen 4 core, fp8 weights from its L1, 4
// rows x T tokens per step of 32 values took 9.1, 12.6, 15.6, 17.4, 21.4, 25.4 cycles for T = 1
// to 6, so 8 tokens as 4 + 4 take 34.8 where 6 + 2 took 38.0, and 13 as 5 + 4 + 4 take 56.2
// where 6 + 6 + 1 took 59.9. A token's sum runs the same whatever its group's size.
template <int kMaxTokens, typename Group>
inline void ForTokenGroups(int64_t n, const Group& group) {
  static_assert(kMaxTokens >= 1 && kMaxTokens <= 6);
  if (n <= 0) return;
  const int64_t groups = (n + kMaxTokens - 1) / kMaxTokens;
  const int64_t base = n / groups, larger = n % groups;
  int64_t t = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t size = base + (g < larger ? 1 : 0);
    [&]<int... kSizes>(std::integer_sequence<int, kSizes...>) {
      (void)((size == kSizes + 1 ? (group.template operator()<kSizes + 1>(t), true) : false) ||
             ...);
    }
    (std::make_integer_sequence<int, kMaxTokens>{});
    t += size;
  }
}

// The number of token groups ForTokenGroups<kMaxTokens> makes of n tokens.
template <int kMaxTokens>
inline int64_t TokenGroupCount(int64_t n) {
  return n <= 0 ? 0 : (n + kMaxTokens - 1) / kMaxTokens;
}

// Calls strip.template operator()<R>(r, next) for strips of 4 rows, then single rows. `next` is
// the first row of the 4-row strip `ahead` strips on while it is whole (what to prefetch), else
// -1: the rows after the last one are not ours to fetch.
template <typename Strip>
inline void ForRowStrips(int64_t rows, const Strip& strip, int64_t ahead = 1) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const int64_t next = r + 4 * ahead;
    strip.template operator()<4>(r, next + 4 <= rows ? next : -1);
  }
  for (; r < rows; ++r) strip.template operator()<1>(r, -1);
}

// The `ahead` for ForRowStrips that puts one token group's prefetches at least min_bytes past its
// reads, for rows of row_bytes bytes: a strip of short rows is read faster than the memory
// answers for the strip after it (an expert's down_proj of 384 values is 4 x 192 bytes in q4,
// 4 x 384 in fp8). Measured with q4 weights (engine_decode_bench bench-1b-int4-lmh, batch 1,
// binaries alternated): the next strip 73-78 tok/s, 4 KiB 79-84, 8 KiB 81-85, 16 KiB 76-82;
// fp8 (bench-1b-fp8) 8 KiB 42.2-44.1, 16 KiB 43.7-45.6, 32 KiB 43.7-44.6.
inline int64_t StripsAheadForBytes(int64_t row_bytes, int64_t min_bytes) {
  return std::max<int64_t>(1, (min_bytes + 4 * row_bytes - 1) / (4 * row_bytes));
}

// out[t * ldo + r] = sum_i x[t * ldx + i] * w[r * ldw + i] (see KernelTable::gemm_bf16).
//
// Prefetch: with one token group (batch 1), the first group of each strip prefetches the next
// strip at the offsets it reads, as the loop streams at the memory's speed. With several groups,
// each strip is read from memory once and then from cache, and the strip two on is prefetched
// in equal shares by all of them, one line of each row at a time spread over their steps. When
// only the first group prefetched (the next strip), the memory sat idle while the later groups
// ran from cache and the first group of the next strip then waited on it. Batch-32 decode runs
// the experts' GEMMs with ~8 tokens each (3 groups of 3 on AVX2), their weights from DRAM.
// Measured on the 2-vCPU Xeon, AVX2 pinned, 2026-12-06:
//  - single-thread harness, 128 Qwen3-MoE experts of [768, 2048] + [2048, 384] bf16 with
//    Binomial(256, 1/32) tokens each: 58.5 -> 82.5 GFLOP/s (median of 9); the strip one on,
//    spread: 76.5; three on 84.0; four on 75.0 (the strips in flight crowd out the L1);
//  - engine_decode_bench bench-1b@avx2 (2 threads, 48 steps, old and new binary alternated):
//    batch 32 114.3 -> 131.6 tok/s with batch 1 24.0 -> 24.3 in the same rounds (4.8x -> 5.4x
//    batch 1); bench-1b@avx512bf16 batch 32 143.1, 143.7 -> 153.0, 153.6 tok/s.
template <typename P, int kMaxTokens, typename X, typename W>
void Gemm(const X* x, int64_t ldx, int64_t n, int64_t k, const W* w, int64_t ldw, int64_t rows,
          float* out, int64_t ldo) {
  constexpr int64_t kLine = 64 / sizeof(W);
  const int64_t groups = TokenGroupCount<kMaxTokens>(n);
  const int64_t lines = (k + kLine - 1) / kLine;  // per row
  const int64_t steps = k / P::kStep;
  ForRowStrips(
      rows,
      [&]<int R>(int64_t r, int64_t next_row) {
        int64_t group = 0;
        ForTokenGroups<kMaxTokens>(n, [&]<int T>(int64_t t) {
          StripPrefetch<W> prefetch;
          if (next_row >= 0)
            prefetch = GroupShareOf(w + next_row * ldw, lines, steps, group, groups);
          MicroKernel<P, R, T>(x + t * ldx, ldx, k, w + r * ldw, ldw, out + t * ldo + r, ldo,
                               prefetch);
          ++group;
        });
      },
      groups > 1 ? 2 : 1);
}

// The fp8 e4m3 micro-kernel: R rows of block-quantized weights x T tokens. k runs in segments
// that stay inside one scale block; in each, a row's weights are widened in registers
// (P::LoadW8: the stored value times 2^-120, exact) and multiplied by the row's block scale
// times 2^120 (exact while that stays finite, else in two steps), so every weight is
// value * scale rounded once, as the dequantized reference. Segment tails (a slice that starts
// mid-block) are summed in scalar, apart from the vector lanes: the order depends on k and the
// offsets only, never on T, so batching invariance holds.
template <typename P, int R, int T, typename X>
inline void MicroKernelFp8(const X* x, int64_t ldx, int64_t k, const uint8_t* w, int64_t ldw,
                           const float* const (&scale_rows)[R], int64_t block_cols,
                           int64_t col_offset, float* out, int64_t ldo, const uint8_t* next) {
  typename P::Acc acc[R][T];
  float tail[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      acc[r][t] = P::Zero();
      tail[r][t] = 0.0f;
    }
  }
  constexpr float kUnbias = 0x1p120f;  // undoes LoadW8's 2^-120
  int64_t i = 0;
  while (i < k) {
    const int64_t block = (i + col_offset) / block_cols;
    const int64_t segment_end = std::min(k, (block + 1) * block_cols - col_offset);
    float mult[R];
    bool two_step = false;
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      mult[r] = scale_rows[r][block] * kUnbias;
      two_step |= !(std::fabs(mult[r]) <= std::numeric_limits<float>::max());
    }
    if (two_step) {
      for (int r = 0; r < R; ++r) mult[r] = scale_rows[r][block];
    }
    for (; i + P::kStep <= segment_end; i += P::kStep) {
      if (next != nullptr) {
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) PrefetchLine(next + r * ldw + i);
      }
      decltype(P::LoadW8(w)) wv[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        wv[r] = P::LoadW8(w + r * ldw + i);
        if (two_step) wv[r] = P::Mul(wv[r], kUnbias);
        wv[r] = P::Mul(wv[r], mult[r]);
      }
#pragma GCC unroll 6
      for (int t = 0; t < T; ++t) {
        const auto xv = P::LoadX(x + t * ldx + i);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) acc[r][t] = P::Madd(acc[r][t], wv[r], xv);
      }
    }
    for (; i < segment_end; ++i) {
      for (int r = 0; r < R; ++r) {
        const float wval = F8E4M3ToFloat(w[r * ldw + i]) * scale_rows[r][block];
        for (int t = 0; t < T; ++t) tail[r][t] += ToFloat(x[t * ldx + i]) * wval;
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) out[t * ldo + r] = P::Sum(acc[r][t]) + tail[r][t];
  }
}

// As Gemm with fp8 e4m3 weights and their block scales, each weight times its scale in registers
// (GemmFp8ScaledF32's fallback).
template <typename P, int kMaxTokens, typename X>
void GemmFp8(const X* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
             int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  ForRowStrips(rows, [&]<int R>(int64_t r, int64_t next_row) {
    const uint8_t* next = next_row < 0 ? nullptr : w + next_row * ldw;
    const float* scale_rows[R];
    for (int j = 0; j < R; ++j) scale_rows[j] = scales.Row(r + j);
    ForTokenGroups<kMaxTokens>(n, [&]<int T>(int64_t t) {
      MicroKernelFp8<P, R, T>(x + t * ldx, ldx, k, w + r * ldw, ldw, scale_rows, scales.block_cols,
                              scales.col_offset, out + t * ldo + r, ldo, next);
      next = nullptr;
    });
  });
}

// fp8 weights with their block scales on the activations. Along a run of rows that share a scale
// row (128 in DeepSeek-V3's and Qwen3-FP8's checkpoints) a weight's scale depends on its column
// only, so sum_i x_i (w_i s_b(i)) = sum_i (x_i s_b(i)) w_i: each token's activations are scaled
// once per run (n x k products against the run's rows x n x k) and the e4m3 values multiply them
// as the policy widens them, one chain per row and token over all of k, with no per-block scale
// step: the same operations for a token whatever its batch. Exponents: the policy's weights come
// out 2^-120 small (LoadW8), so x s goes in 2^100 large and each finished sum is taken back by
// 2^-20 (exact, a power of two); sums below 2^-106 x 2^20 would be fp32 subnormals.
inline constexpr float kScaledXBias = 0x1p100f;
inline constexpr float kScaledXUnbias = 0x1p20f;

// Tokens per block of scaled activations: a block's (64 x k) and a run's weights (128 rows) stay
// in the L2 while every strip of the run multiplies them.
inline constexpr int64_t kScaledTokenBlock = 64;

// A policy P of fp32 or bf16 products whose weights are e4m3 bytes, as P::LoadW8 widens them.
template <typename P>
struct Fp8ScaledXPolicy {
  using Acc = typename P::Acc;
  static constexpr int kStep = P::kStep;
  static Acc Zero() { return P::Zero(); }
  static auto LoadW(const uint8_t* w) { return P::LoadW8(w); }
  template <typename X>
  static auto LoadX(const X* x) {
    return P::LoadX(x);
  }
  template <typename W, typename X>
  static Acc Madd(Acc acc, W w, X x) {
    return P::Madd(acc, w, x);
  }
  static float Sum(Acc acc) { return P::Sum(acc); }
  static void Sum4(Acc a, Acc b, Acc c, Acc d, float* out) requires requires {
    P::Sum4(a, b, c, d, out);
  }
  { P::Sum4(a, b, c, d, out); }
  static float TailW(uint8_t byte) { return P::TailW8(byte); }
  static float Finish(float sum) { return sum * kScaledXUnbias; }
};

// Rows in runs of one scale row; per run, tokens in blocks of kScaledTokenBlock, each block's
// activations scaled once by scale(t0, nb, scale_row, XS* out), which returns false where they
// would overflow (fallback(row_begin, row_end, t0, nb) then multiplies that run and block in
// its own way); then strips of 4 rows (then single rows) in token groups of up to kMaxTokens
// through MicroKernel<Fp8ScaledXPolicy<P>>, prefetched as Gemm prefetches, but one group reads
// `one_group_ahead` bytes ahead.
template <typename P, int kMaxTokens, typename XS, typename Scale, typename Fallback>
void GemmFp8ScaledX(int64_t n, int64_t k, const uint8_t* w, int64_t ldw, int64_t rows,
                    const Fp8Scales& scales, float* out, int64_t ldo, int64_t one_group_ahead,
                    const Scale& scale, const Fallback& fallback) {
  thread_local std::vector<XS> scaled;
  scaled.resize(static_cast<size_t>(std::min(n, kScaledTokenBlock) * k));
  const int64_t lines = (k + 63) / 64, steps = k / P::kStep;
  for (int64_t run = 0; run < rows;) {
    const int64_t scale_row = (run + scales.row_offset) / scales.block_rows;
    const int64_t run_end = std::min(rows, (scale_row + 1) * scales.block_rows - scales.row_offset);
    for (int64_t t0 = 0; t0 < n; t0 += kScaledTokenBlock) {
      const int64_t nb = std::min(kScaledTokenBlock, n - t0);
      if (!scale(t0, nb, scales.scales + scale_row * scales.ld, scaled.data())) {
        fallback(run, run_end, t0, nb);
        continue;
      }
      const int64_t groups = TokenGroupCount<kMaxTokens>(nb);
      const int64_t ahead = groups > 1 ? 2 : StripsAheadForBytes(ldw, one_group_ahead);
      const auto strip = [&]<int R>(int64_t r) {
        const int64_t next_row = r + 4 * ahead;
        int64_t group = 0;
        ForTokenGroups<kMaxTokens>(nb, [&]<int T>(int64_t t) {
          StripPrefetch<uint8_t> prefetch;
          if (R == 4 && next_row + 4 <= rows) {
            prefetch = GroupShareOf(w + next_row * ldw, lines, steps, group, groups);
          }
          MicroKernel<Fp8ScaledXPolicy<P>, R, T>(scaled.data() + t * k, k, k, w + r * ldw, ldw,
                                                 out + (t0 + t) * ldo + r, ldo, prefetch);
          ++group;
        });
      };
      int64_t r = run;
      for (; r + 4 <= run_end; r += 4) strip.template operator()<4>(r);
      for (; r < run_end; ++r) strip.template operator()<1>(r);
    }
    run = run_end;
  }
}

// out[t * k + i] = x[t][i] x scale_row[cb(i)] x 2^100 in fp32, t < n, i < k; false where one
// overflows (|x s| >= 2^28, or x infinite).
inline bool ScaleF32Activations(const float* x, int64_t ldx, int64_t n, int64_t k,
                                const float* scale_row, int64_t block_cols, int64_t col_offset,
                                float* out) {
  bool overflow = false;
  for (int64_t i = 0; i < k;) {
    const int64_t block = (i + col_offset) / block_cols;
    const int64_t end = std::min(k, (block + 1) * block_cols - col_offset);
    const float m = scale_row[block] * kScaledXBias;
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t j = i; j < end; ++j) {
        const float v = x[t * ldx + j] * m;
        out[t * k + j] = v;
        overflow |= std::fabs(v) > std::numeric_limits<float>::max();
      }
    }
    i = end;
  }
  return !overflow;
}

// GemmFp8's products with the scales on the activations (fp32 activations): x s rounded to fp32
// once, a relative 2^-24 per product as the dequantized weight's own rounding; GemmFp8 for a run
// and block of tokens that would overflow.
template <typename P, int kMaxTokens>
void GemmFp8ScaledF32(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w,
                      int64_t ldw, int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  GemmFp8ScaledX<P, kMaxTokens, float>(
      n, k, w, ldw, rows, scales, out, ldo, /*one_group_ahead=*/4 * ldw,
      [&](int64_t t0, int64_t nb, const float* scale_row, float* scaled) {
        return ScaleF32Activations(x + t0 * ldx, ldx, nb, k, scale_row, scales.block_cols,
                                   scales.col_offset, scaled);
      },
      [&](int64_t r0, int64_t r1, int64_t t0, int64_t nb) {
        Fp8Scales shifted = scales;
        shifted.row_offset += r0;
        GemmFp8<P, kMaxTokens>(x + t0 * ldx, ldx, nb, k, w + r0 * ldw, ldw, r1 - r0, shifted,
                               out + t0 * ldo + r0, ldo);
      });
}

// The q4 micro-kernel: R rows x T tokens. k runs in segments that stay inside one group; in each,
// a row's values are widened in registers and dequantized with the row's group scale and zero
// point, (q - zero) * scale: exact in q - zero, then rounded once, as the dequantized reference.
// Summed in the order of MicroKernel whatever T is (batching invariance).
template <typename P, int R, int T, typename X>
inline void MicroKernelQ4(const X* x, int64_t ldx, int64_t k, const uint8_t* w, int64_t ldw,
                          const Q4Groups& groups, int64_t row, float* out, int64_t ldo,
                          const uint8_t* next) {
  static_assert(kQ4Unit % P::kStep == 0);
  typename P::Acc acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) acc[r][t] = P::Zero();
  }
  int64_t base[R];
  for (int r = 0; r < R; ++r) base[r] = groups.Row(row + r);
  int64_t group = groups.Group(0);
  for (int64_t i = 0; i < k; ++group) {
    const int64_t segment_end = std::min(k, (group + 1) * groups.block_cols - groups.col_offset);
    float scale[R], zero[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      scale[r] = groups.scales[base[r] + group];
      zero[r] = groups.zero_points == nullptr ? static_cast<float>(kQ4SymmetricZero)
                                              : groups.zero_points[base[r] + group];
    }
    for (; i < segment_end; i += kQ4Unit) {
      if (next != nullptr && i % 128 == 0) {
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) PrefetchLine(next + r * ldw + i / 2);
      }
      const Q4Position pos = Q4PositionOf(k, i);
#pragma GCC unroll 4
      for (int part = 0; part < kQ4Unit / P::kStep; ++part) {
        const int64_t at = i + part * P::kStep;
        decltype(P::LoadX(x)) xv[T];
#pragma GCC unroll 6
        for (int t = 0; t < T; ++t) xv[t] = P::LoadX(x + t * ldx + at);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const auto q =
              P::LoadQ4(w + r * ldw + pos.unit_byte, pos.half, pos.offset + part * P::kStep);
          const auto wv = P::Dequant(q, zero[r], scale[r]);
#pragma GCC unroll 6
          for (int t = 0; t < T; ++t) acc[r][t] = P::Madd(acc[r][t], wv, xv[t]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) out[t * ldo + r] = P::Sum(acc[r][t]);
  }
}

// As Gemm with q4 weights and their groups (see KernelTable::gemm_q4).
template <typename P, int kMaxTokens, typename X>
void GemmQ4(const X* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) {
  ForRowStrips(rows, [&]<int R>(int64_t r, int64_t next_row) {
    const uint8_t* next = next_row < 0 ? nullptr : w + next_row * ldw;
    ForTokenGroups<kMaxTokens>(n, [&]<int T>(int64_t t) {
      MicroKernelQ4<P, R, T>(x + t * ldx, ldx, k, w + r * ldw, ldw, groups, r, out + t * ldo + r,
                             ldo, next);
      next = nullptr;
    });
  });
}

}  // namespace expertmesh::kernels::cpu::streaming

#endif  // EXPERTMESH_KERNELS_CPU_STREAMING_GEMM_H_
