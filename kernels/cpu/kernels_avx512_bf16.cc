// The streaming GEMM with bf16 weights and bf16 activations on AVX512_BF16 (VDPBF16PS: 16 lanes,
// each adding the products of two adjacent bf16 pairs to an fp32 accumulator). Weights are used
// as stored, with no widening, and each instruction does two multiply-adds per lane, so
// batched bf16 decode and prefill do twice the work per instruction of the AVX-512F kernel.
// This file alone is compiled with -mavx512bf16; nothing here runs unless
// CpuSupports(CpuIsa::kAvx512Bf16).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/avx512_sum.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/kernels_avx512_bf16_q4.h"
#include "kernels/cpu/kernels_avx512_bf16_widen.h"
#include "kernels/cpu/streaming_gemm.h"

namespace expertmesh::kernels::cpu {
namespace {

inline __m512bh Load32(const uint16_t* p) {
  return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
}

// 32 bf16 values (16 pairs) per step, for weights and activations alike.
struct Avx512Bf16Policy {
  using Acc = __m512;
  static constexpr int kStep = 32;
  static Acc Zero() { return _mm512_setzero_ps(); }
  static __m512bh LoadW(const uint16_t* w) { return Load32(w); }
  static __m512bh LoadX(const uint16_t* x) { return Load32(x); }
  static Acc Madd(Acc acc, __m512bh w, __m512bh x) { return _mm512_dpbf16_ps(acc, w, x); }
  static float Sum(Acc acc) { return Avx512HorizontalSum(acc); }
};

void GemmBf16XBf16(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w,
                   int64_t ldw, int64_t rows, float* out, int64_t ldo) {
  streaming::Gemm<Avx512Bf16Policy, 6>(x, ldx, n, k, w, ldw, rows, out, ldo);
}

// 32 e4m3 values as bf16, each times 2^-120: sign-extending the byte to 16 bits and shifting it
// left by 4 puts the sign in bit 15 (copies in 14..11, masked off) and exponent|mantissa in
// bits 10..4, a bf16 with the exponent 120 less; exact for normal e4m3 values. The e4m3
// subnormals (|v| < 2^-6, below 1/28000 of the block's largest weight) become bf16 subnormals,
// which VDPBF16PS reads as zero: the one approximation of this path, far below bf16 activations'.
inline __m512i LoadW8AsBf16(const uint8_t* p) {
  const __m512i v = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_and_si512(_mm512_slli_epi16(v, 4), _mm512_set1_epi16(static_cast<short>(0x87f0)));
}

// The weights come out 2^120 too small; products that small would fall below fp32's normal
// range, which VDPBF16PS flushes to zero. So the activations go in 2^100 too large (exact: their
// exponent field + 100; zeros, subnormals, infinities and NaNs as they are): products are
// 2^-20 off, which the block scale takes back.
constexpr int kActivationBias = 100;
constexpr float kProductUnbias = 0x1p20f;

void BiasActivations(const uint16_t* x, int64_t n, int64_t ldx, int64_t k,
                     std::vector<uint16_t>& out) {
  out.resize(static_cast<size_t>(n * k));
  const __m512i exponent = _mm512_set1_epi16(0x7f80);
  const __m512i bias = _mm512_set1_epi16(static_cast<short>(kActivationBias << 7));
  for (int64_t t = 0; t < n; ++t) {
    const uint16_t* src = x + t * ldx;
    uint16_t* dst = out.data() + t * k;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      const __m512i v = _mm512_loadu_si512(src + i);
      const __m512i e = _mm512_and_si512(v, exponent);
      const __mmask32 normal =
          _mm512_test_epi16_mask(v, exponent) & ~_mm512_cmpeq_epi16_mask(e, exponent);
      _mm512_storeu_si512(dst + i, _mm512_mask_add_epi16(v, normal, v, bias));
    }
    for (; i < k; ++i) {
      const uint16_t e = src[i] & 0x7f80;
      dst[i] =
          e != 0 && e != 0x7f80 ? static_cast<uint16_t>(src[i] + (kActivationBias << 7)) : src[i];
    }
  }
}

// fp8 weights x bf16 activations: per scale-block segment of k, each (row, token) sums the
// exact products of the segment in its own accumulator (VDPBF16PS, two pairs per lane), which
// then enters the token's total times the row's block scale (x 2^20, or in two steps where that
// overflows). The order depends only on k and the block offsets, never on the token count.
// Where a micro-kernel's bf16 weights come from: e4m3 bytes widened as they are read (one token
// group: nothing to share), or a strip already widened once into scratch (several groups).
struct Fp8Weights {
  const uint8_t* w;
  int64_t ldw;
  __m512bh Load(int r, int64_t i) const {
    return reinterpret_cast<__m512bh>(LoadW8AsBf16(w + r * ldw + i));
  }
};
struct WidenedWeights {
  const uint16_t* w;
  int64_t ldw;
  __m512bh Load(int r, int64_t i) const { return Load32(w + r * ldw + i); }
};

// R rows x T tokens. The segment sums live in registers (R x T of them, up to 4 x 6 = 24, with
// the T activation vectors and one weight vector: 31 of the 32); the totals they fold into live
// in memory (16 lanes each, in the L1), which frees the registers for groups of 6 tokens: one
// weight load feeds 6 VDPBF16PS instead of 3. Each row's folded scale and its overflow test are
// computed once per segment, not once per token. A total sees the same operations in the same
// order as with T = 1 (the fold is the same FMA from memory as from a register).
template <int R, int T, typename Weights>
__attribute__((noinline)) void MicroKernelFp8Bf16(
    const uint16_t* x, int64_t ldx, int64_t k, const uint8_t* w, int64_t ldw,
    const Weights& weights, const float* const (&scale_rows)[R], int64_t block_cols,
    int64_t col_offset, float* out, int64_t ldo, const uint8_t* next, float* totals_scratch) {
  constexpr float kUnbias = kProductUnbias;
  // The totals, [R][T][16], in the caller's scratch: a local array here GCC split into copies
  // that it shuffled through the stack at every fold (63% of this kernel's samples at batch 32).
  const auto totals = reinterpret_cast<float(*)[T][16]>(totals_scratch);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) _mm512_store_ps(totals[r][t], _mm512_setzero_ps());
  }
  float tail[R][T] = {};
  int64_t i = 0;
  while (i < k) {
    const int64_t block = (i + col_offset) / block_cols;
    const int64_t segment_end = std::min(k, (block + 1) * block_cols - col_offset);
    __m512 part[R][T];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
      for (int t = 0; t < T; ++t) part[r][t] = _mm512_setzero_ps();
    }
    for (; i + 32 <= segment_end; i += 32) {
      if (next != nullptr) {
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) streaming::PrefetchLine(next + r * ldw + i);
      }
      __m512bh xv[T];
#pragma GCC unroll 6
      for (int t = 0; t < T; ++t) xv[t] = Load32(x + t * ldx + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m512bh wv = weights.Load(r, i);
#pragma GCC unroll 6
        for (int t = 0; t < T; ++t) part[r][t] = _mm512_dpbf16_ps(part[r][t], wv, xv[t]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      AddScaledParts(
          part[r], scale_rows[r][block], kUnbias,
          [&](int t) { return _mm512_load_ps(totals[r][t]); },
          [&](int t, __m512 v) { _mm512_store_ps(totals[r][t], v); });
    }
    for (; i < segment_end; ++i) {
      for (int r = 0; r < R; ++r) {
        const float wval = F8E4M3ToFloat(w[r * ldw + i]) * scale_rows[r][block];
        for (int t = 0; t < T; ++t) {
          tail[r][t] += Bf16ToFloat(x[t * ldx + i]) * 0x1p-100f * wval;  // undo the bias
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      out[t * ldo + r] = Avx512HorizontalSum(_mm512_load_ps(totals[r][t])) + tail[r][t];
    }
  }
}

// Row j of a strip (k e4m3 values) as the bf16 weights LoadW8AsBf16 gives, into out[0..k).
// While it reads, it prefetches the same bytes of the strip's row `ahead` (if any) into the L2,
// a line at a time: the several token groups that multiply this strip then hide the memory's
// latency for the next one, which otherwise the widening itself waited on.
void WidenFp8Row(const uint8_t* row, int64_t k, const uint8_t* ahead, uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    if (ahead != nullptr && i % 64 == 0) __builtin_prefetch(ahead + i, 0, 2);
    _mm512_storeu_si512(out + i, LoadW8AsBf16(row + i));
  }
  for (; i < k; ++i) {  // the same bits as LoadW8AsBf16, one at a time
    const int16_t v = static_cast<int8_t>(row[i]);
    out[i] = static_cast<uint16_t>((v * 16) & 0x87f0);
  }
}

// One token group (up to 3 tokens): 12 segment sums, 4 weight vectors widened as they are read,
// the next strips prefetched. Several groups: each strip widened once into scratch, tokens in
// groups of 6.
void GemmF8XBf16(const uint16_t* x_in, int64_t ldx_in, int64_t n, int64_t k, const uint8_t* w,
                 int64_t ldw, int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  thread_local std::vector<uint16_t> biased, widened;
  BiasActivations(x_in, n, ldx_in, k, biased);
  const uint16_t* x = biased.data();
  const int64_t ldx = k;
  alignas(64) float totals[4 * 6 * 16];
  if (n <= 3) {
    streaming::ForRowStrips(
        rows,
        [&]<int R>(int64_t r, int64_t next_row) {
          const float* scale_rows[R];
          for (int j = 0; j < R; ++j) scale_rows[j] = scales.Row(r + j);
          const uint8_t* strip = w + r * ldw;
          const uint8_t* next = next_row < 0 ? nullptr : w + next_row * ldw;
          streaming::ForTokenGroups<3>(n, [&]<int T>(int64_t t) {
            MicroKernelFp8Bf16<R, T>(x + t * ldx, ldx, k, strip, ldw, Fp8Weights{strip, ldw},
                                     scale_rows, scales.block_cols, scales.col_offset,
                                     out + t * ldo + r, ldo, next, totals);
          });
        },
        streaming::StripsAheadForBytes(ldw, 16384));
    return;
  }
  // A strip widened to bf16 once for all groups: the same values in the same order as widening
  // on the fly, so outputs do not change with the batch.
  widened.resize(static_cast<size_t>(4 * k));
  streaming::ForRowStrips(rows, [&]<int R>(int64_t r, int64_t next_row) {
    const float* scale_rows[R];
    for (int j = 0; j < R; ++j) scale_rows[j] = scales.Row(r + j);
    const uint8_t* strip = w + r * ldw;
    for (int j = 0; j < R; ++j) {
      WidenFp8Row(strip + j * ldw, k, next_row < 0 ? nullptr : w + (next_row + j) * ldw,
                  widened.data() + j * k);
    }
    streaming::ForTokenGroups<6>(n, [&]<int T>(int64_t t) {
      MicroKernelFp8Bf16<R, T>(x + t * ldx, ldx, k, strip, ldw, WidenedWeights{widened.data(), k},
                               scale_rows, scales.block_cols, scales.col_offset, out + t * ldo + r,
                               ldo, nullptr, totals);
    });
  });
}

}  // namespace

const KernelTable& Avx512Bf16Kernels() {
  static const KernelTable table = [] {
    KernelTable t = Avx512Kernels();
    t.gemm_bf16_xbf16 = GemmBf16XBf16;
    t.gemm_f8_xbf16 = GemmF8XBf16;
    t.gemm_q4_xbf16 = GemmQ4XBf16;
    t.widen_f8_bf16 = WidenF8Bf16;
    t.widen_q4_bf16 = WidenQ4Bf16;
    return t;
  }();
  return table;
}

}  // namespace expertmesh::kernels::cpu
