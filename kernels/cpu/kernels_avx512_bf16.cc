// The streaming GEMM with bf16 weights and bf16 activations on AVX512_BF16 (VDPBF16PS: 16 lanes,
// each adding the products of two adjacent bf16 pairs to an fp32 accumulator). Weights are used
// as stored, with no widening, and each instruction does two multiply-adds per lane, so
// batched bf16 decode and prefill do twice the work per instruction of the AVX-512F kernel.
// This file alone is compiled with -mavx512bf16; nothing here runs unless
// CpuSupports(CpuIsa::kAvx512Bf16).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
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
  static void Sum4(Acc a, Acc b, Acc c, Acc d, float* out) {
    Avx512HorizontalSum4(a, b, c, d, out);
  }
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

// The fallback for fp8 weights where their scales cannot go onto the activations (GemmF8XBf16):
// per scale-block segment of k, each (row, token) sums the exact products of the segment in its
// own accumulator (VDPBF16PS, two pairs per lane, the weights widened as they are read), which
// then enters the token's total times the row's block scale (x 2^20, or in two steps where that
// overflows). The order depends only on k and the block offsets, never on the token count.
// R rows x T tokens (T <= 3); the totals live in the caller's scratch (a local array GCC split
// into copies that it shuffled through the stack at every fold).
template <int R, int T>
__attribute__((noinline)) void MicroKernelFp8Folded(const uint16_t* x, int64_t ldx, int64_t k,
                                                    const uint8_t* w, int64_t ldw,
                                                    const float* const (&scale_rows)[R],
                                                    int64_t block_cols, int64_t col_offset,
                                                    float* out, int64_t ldo, const uint8_t* next,
                                                    float* totals_scratch) {
  const auto totals = reinterpret_cast<float(*)[T][16]>(totals_scratch);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
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
#pragma GCC unroll 3
      for (int t = 0; t < T; ++t) part[r][t] = _mm512_setzero_ps();
    }
    for (; i + 32 <= segment_end; i += 32) {
      if (next != nullptr) {
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) streaming::PrefetchLine(next + r * ldw + i);
      }
      __m512bh xv[T];
#pragma GCC unroll 3
      for (int t = 0; t < T; ++t) xv[t] = Load32(x + t * ldx + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const auto wv = reinterpret_cast<__m512bh>(LoadW8AsBf16(w + r * ldw + i));
#pragma GCC unroll 3
        for (int t = 0; t < T; ++t) part[r][t] = _mm512_dpbf16_ps(part[r][t], wv, xv[t]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      AddScaledParts(
          part[r], scale_rows[r][block], kProductUnbias,
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

// Strips of 4 rows in token groups of 3, the first group prefetching 16 KiB ahead.
void GemmF8XBf16Folded(const uint16_t* x_in, int64_t ldx_in, int64_t n, int64_t k, const uint8_t* w,
                       int64_t ldw, int64_t rows, const Fp8Scales& scales, float* out,
                       int64_t ldo) {
  thread_local std::vector<uint16_t> biased;
  BiasActivations(x_in, n, ldx_in, k, biased);
  const uint16_t* x = biased.data();
  const int64_t ldx = k;
  alignas(64) float totals[4 * 3 * 16];
  streaming::ForRowStrips(
      rows,
      [&]<int R>(int64_t r, int64_t next_row) {
        const float* scale_rows[R];
        for (int j = 0; j < R; ++j) scale_rows[j] = scales.Row(r + j);
        const uint8_t* next = next_row < 0 ? nullptr : w + next_row * ldw;
        streaming::ForTokenGroups<3>(n, [&]<int T>(int64_t t) {
          MicroKernelFp8Folded<R, T>(x + t * ldx, ldx, k, w + r * ldw, ldw, scale_rows,
                                     scales.block_cols, scales.col_offset, out + t * ldo + r, ldo,
                                     next, totals);
          next = nullptr;
        });
      },
      streaming::StripsAheadForBytes(ldw, 16384));
}

// fp8 weights with the block scales on the activations (streaming::GemmFp8ScaledX): each token's
// activations times their column's block scale (that of the run's scale row) rounded to bf16,
// and the e4m3 values as LoadW8AsBf16 widens them in registers (exact), multiplied by VDPBF16PS.
// The rounding of x s to bf16 is a relative 2^-9 per product, as that of w s in a bf16
// checkpoint or on the AMX tiles. Products below 2^-126, which VDPBF16PS flushes, are those of
// |x w s| < 2^-106.
struct Avx512Bf16Fp8Policy {
  using Acc = __m512;
  static constexpr int kStep = 32;
  static Acc Zero() { return _mm512_setzero_ps(); }
  static __m512bh LoadW8(const uint8_t* w) { return reinterpret_cast<__m512bh>(LoadW8AsBf16(w)); }
  static __m512bh LoadX(const uint16_t* x) { return Load32(x); }
  static Acc Madd(Acc acc, __m512bh w, __m512bh x) { return _mm512_dpbf16_ps(acc, w, x); }
  static float Sum(Acc acc) { return Avx512HorizontalSum(acc); }
  static void Sum4(Acc a, Acc b, Acc c, Acc d, float* out) {
    Avx512HorizontalSum4(a, b, c, d, out);
  }
  // LoadW8AsBf16's value of one byte, a subnormal as the zero VDPBF16PS reads it as.
  static float TailW8(uint8_t byte) {
    const auto bits = static_cast<uint16_t>((static_cast<int8_t>(byte) * 16) & 0x87f0);
    return (bits & 0x7f80) == 0 ? 0.0f : Bf16ToFloat(bits);
  }
};

// bf16 of an fp32 as VCVTNEPS2BF16 rounds it: subnormals to zero, then FloatToBf16's nearest
// even.
inline uint16_t RoundToBf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7f800000u) == 0) return static_cast<uint16_t>((bits >> 16) & 0x8000);
  return FloatToBf16(f);
}

// The largest magnitude among x[t][i], t < n, i < k, as bf16 bits (infinities and NaNs above
// every finite one): for finite bf16 values the order of the bits is that of the magnitudes.
uint16_t MaxMagnitudeBits(const uint16_t* x, int64_t ldx, int64_t n, int64_t k) {
  __m512i most = _mm512_setzero_si512();
  uint16_t scalar = 0;
  const __m512i magnitude = _mm512_set1_epi16(0x7fff);
  for (int64_t t = 0; t < n; ++t) {
    const uint16_t* row = x + t * ldx;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      most = _mm512_max_epu16(most, _mm512_and_si512(_mm512_loadu_si512(row + i), magnitude));
    }
    for (; i < k; ++i) scalar = std::max<uint16_t>(scalar, row[i] & 0x7fff);
  }
  alignas(64) uint16_t lanes[32];
  _mm512_store_si512(lanes, most);
  return std::max(scalar, *std::max_element(lanes, lanes + 32));
}

// Whether x s 2^100 stays finite in bf16 for every activation of magnitude <= max_x (bf16 bits)
// and every scale of columns [0, k) of `scale_row`: then ScaleActivations need not check.
bool ScalingCannotOverflow(uint16_t max_x, const float* scale_row, int64_t k, int64_t block_cols,
                           int64_t col_offset) {
  if (max_x >= 0x7f80) return false;
  double max_scale = 0;
  for (int64_t b = col_offset / block_cols; b <= (k - 1 + col_offset) / block_cols; ++b) {
    if (!(std::fabs(scale_row[b]) <= std::numeric_limits<float>::max())) return false;
    max_scale = std::max<double>(max_scale, std::fabs(scale_row[b]));
  }
  // Below the largest bf16 by more than its rounding: nothing rounds up to infinity.
  return double{Bf16ToFloat(max_x)} * max_scale * double{streaming::kScaledXBias} < 0x1.fep127;
}

// out[t * k + i] = bf16(x[t][i] x scale_row[cb(i)] x 2^100) for t < n, i < k. Unless `checked`
// is false (ScalingCannotOverflow said so), false where a finite x overflows (|x s| >= 2^28) or a
// scale times 2^100 does (s >= 2^28): far beyond the activations and scales of real checkpoints;
// the caller then folds the blocks instead. Unchecked, 32 values take 8 instructions: the even and
// the odd values as fp32 by a shift and a mask, two multiplies, one conversion of both and a
// permutation back into order.
bool ScaleActivations(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const float* scale_row,
                      int64_t block_cols, int64_t col_offset, bool checked, uint16_t* out) {
  alignas(64) static constexpr auto kInterleave = [] {
    std::array<uint16_t, 32> idx{};
    for (int i = 0; i < 16; ++i) {
      idx[2 * i] = static_cast<uint16_t>(i);
      idx[2 * i + 1] = static_cast<uint16_t>(16 + i);
    }
    return idx;
  }();
  const __m512i interleave = _mm512_load_si512(kInterleave.data());
  const __m512i high_halves = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const __m512i exponent = _mm512_set1_epi32(0x7f80);
  __mmask16 overflow = 0;
  for (int64_t i = 0; i < k;) {
    const int64_t block = (i + col_offset) / block_cols;
    const int64_t end = std::min(k, (block + 1) * block_cols - col_offset);
    const float m = scale_row[block] * streaming::kScaledXBias;
    if (!std::isfinite(m)) return false;
    const __m512 mult = _mm512_set1_ps(m);
    for (int64_t t = 0; t < n; ++t) {
      const uint16_t* src = x + t * ldx;
      uint16_t* dst = out + t * k;
      int64_t j = i;
      if (!checked) {
        for (; j + 32 <= end; j += 32) {
          const __m512i v = _mm512_loadu_si512(src + j);
          const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
          const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(v, high_halves));
          const __m512i both = reinterpret_cast<__m512i>(
              _mm512_cvtne2ps_pbh(_mm512_mul_ps(odd, mult), _mm512_mul_ps(even, mult)));
          _mm512_storeu_si512(dst + j, _mm512_permutexvar_epi16(interleave, both));
        }
      }
      for (; j + 16 <= end; j += 16) {
        const __m512i raw =
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j)));
        const __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
        const __m256i y = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_mul_ps(v, mult)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), y);
        if (checked) {
          overflow |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_cvtepu16_epi32(y), exponent),
                                              exponent) &
                      ~_mm512_cmpeq_epi32_mask(_mm512_and_si512(raw, exponent), exponent);
        }
      }
      for (; j < end; ++j) {
        dst[j] = RoundToBf16(Bf16ToFloat(src[j]) * m);
        overflow |= (dst[j] & 0x7f80) == 0x7f80 && (src[j] & 0x7f80) != 0x7f80;
      }
    }
    i = end;
  }
  return !checked || overflow == 0;
}

// Token groups of up to 6; one group reads 16 KiB ahead (as the folded kernel measured best). The
// overflow test is made once per run and block of tokens from the block's largest activation,
// and each value is checked only where that cannot rule overflow out.
void GemmF8XBf16(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w,
                 int64_t ldw, int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  constexpr int64_t kBlock = streaming::kScaledTokenBlock;
  thread_local std::vector<uint16_t> max_x;
  max_x.clear();
  for (int64_t t0 = 0; t0 < n; t0 += kBlock) {
    max_x.push_back(MaxMagnitudeBits(x + t0 * ldx, ldx, std::min(kBlock, n - t0), k));
  }
  streaming::GemmFp8ScaledX<Avx512Bf16Fp8Policy, 6, uint16_t>(
      n, k, w, ldw, rows, scales, out, ldo, /*one_group_ahead=*/16384,
      [&](int64_t t0, int64_t nb, const float* scale_row, uint16_t* scaled) {
        const bool checked = !ScalingCannotOverflow(max_x[t0 / kBlock], scale_row, k,
                                                    scales.block_cols, scales.col_offset);
        return ScaleActivations(x + t0 * ldx, ldx, nb, k, scale_row, scales.block_cols,
                                scales.col_offset, checked, scaled);
      },
      [&](int64_t r0, int64_t r1, int64_t t0, int64_t nb) {
        Fp8Scales shifted = scales;
        shifted.row_offset += r0;
        GemmF8XBf16Folded(x + t0 * ldx, ldx, nb, k, w + r0 * ldw, ldw, r1 - r0, shifted,
                          out + t0 * ldo + r0, ldo);
      });
}

}  // namespace

const KernelTable& Avx512Bf16Kernels() {
  static const KernelTable table = [] {
    KernelTable t = Avx512Kernels();
    t.gemm_bf16_xbf16 = GemmBf16XBf16;
    t.gemm_f8_xbf16 = GemmF8XBf16;
    t.gemm_q4_xbf16 = GemmQ4XBf16;
    t.widen_q4_bf16 = WidenQ4Bf16;
    AddAvx512Bf16AttentionKernels(t);
    return t;
  }();
  return table;
}

}  // namespace expertmesh::kernels::cpu
