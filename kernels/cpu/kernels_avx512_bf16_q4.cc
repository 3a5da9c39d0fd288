// gemm_q4_xbf16 on AVX512_BF16 + AVX512_VBMI2: q4 weights x bf16 activations with VDPBF16PS,
// each weight exactly (q - zero) x scale.
//
// A 4-bit value q becomes the bf16 number 2 + q / 64 (sign 0, exponent 128, mantissa q: the bits
// 0x4000 | q) in one instruction per 32 values and no table: the low nibbles of a unit's
// zero-extended bytes by an AND-OR (VPTERNLOGD), the high ones by a double shift that brings the
// exponent in from a constant (VPSHRDW). VDPBF16PS multiplies it exactly. Over one group a row's
// products then sum to
//   sum x (2 + q / 64) = (2 + z / 64) sum x + sum x (q - z) / 64,
// so each group's accumulator starts at -(2 + z / 64) times the activations' own lane sums
// (computed once per token and group, shared by every row) and ends at sum x (q - z) / 64, which
// enters the total times 64 x the group's scale. Nothing is rounded to bf16 on the way, and a row
// and group costs one multiply-add where the per-group bf16 tables it replaces (q4_bf16.h, which
// the AMX tiles still use) cost a multiply and a conversion per row and group: one token through
// a 2048 x 16384 weight ran about 1.3x faster on a Xeon core in a standalone comparison.
// The price is cancellation: each lane carries about 2 sum x next to sum x (q - z) / 64, about
// 5 of fp32's 24 bits, far below the 8 of the bf16 activations.
//
// Up to 3 tokens widen the weights as they are read; more widen each 4-row strip once into
// scratch and multiply it in groups of 6 tokens in the same order (the same bits: a token's
// output does not depend on how many share the weight).
// This file alone is compiled with -mavx512vbmi2; nothing here runs unless
// CpuSupports(CpuIsa::kAvx512Bf16).
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/avx512_sum.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/kernels_avx512_bf16_q4.h"
#include "kernels/cpu/streaming_gemm.h"
#include "kernels/q4_layout.h"

namespace expertmesh::kernels::cpu {
namespace {

// 2 + q / 64 for q in 0..15, as bf16 bits: exponent field 128 (the value 2), mantissa q.
constexpr uint16_t kQ4Exponent = 0x4000;
// The weights are (q + 128) / 64; the products are taken back to (q - zero) x scale by the group
// correction (-(2 + zero / 64) x lane sums) and the factor 64 on the scale.
constexpr float kQ4Offset = 2.0f;
constexpr float kQ4Unscale = 64.0f;

// The 64 values of a 64-wide unit (kernels/q4_layout.h) as 32-value chunks of bf16 weights.
inline __m512i LoadUnitWords(const uint8_t* unit) {
  return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit)));
}
inline __m512i LowHalf(__m512i words) {
  // (words & 0x000f) | 0x4000
  return _mm512_ternarylogic_epi32(words, _mm512_set1_epi16(0x000f), _mm512_set1_epi16(kQ4Exponent),
                                   0xea);
}
inline __m512i HighHalf(__m512i words) {
  // The low 16 bits of (4 : words) >> 4: the exponent's 0x4 arrives in bits 12..15 as the high
  // nibble leaves bits 4..7 for 0..3 (the byte's upper half is zero after the extension).
  return _mm512_shrdi_epi16(words, _mm512_set1_epi16(kQ4Exponent >> 12), 4);
}
// The 32 values of a last unit 32 wide: its 16 bytes in both halves of the words, the second
// half shifted by 4.
inline __m512i LoadTail(const uint8_t* unit) {
  const __m256i bytes =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(unit)));
  const __m512i shifts = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  return LowHalf(_mm512_srlv_epi16(_mm512_cvtepu8_epi16(bytes), shifts));
}

// Chunk i (a multiple of 32 below k) of a packed row of k values as bf16 weights.
inline __m512i LoadChunk(const uint8_t* row, int64_t k, int64_t i) {
  const int64_t whole = k & ~int64_t{63};
  if (i >= whole) return LoadTail(row + i / 2);
  const __m512i words = LoadUnitWords(row + (i & ~int64_t{63}) / 2);
  return i % 64 == 0 ? LowHalf(words) : HighHalf(words);
}

// Where a micro-kernel's weights come from: packed bytes widened as they are read (one token
// group: nothing to share), or a strip already widened once into scratch (several groups).
struct PackedQ4 {
  const uint8_t* w;
  int64_t ldw;
  int64_t k;
  __m512i UnitWords(int r, int64_t i) const { return LoadUnitWords(w + r * ldw + i / 2); }
  __m512i Chunk(int r, int64_t i) const { return LoadChunk(w + r * ldw, k, i); }
};
struct WidenedQ4 {
  const uint16_t* w;  // rows of k bf16 weights
  int64_t k;
  __m512i Chunk(int r, int64_t i) const { return _mm512_loadu_si512(w + r * k + i); }
};

// The activations' side of the group correction: for each token and each group k meets, the
// 16 lane sums of its values (VDPBF16PS against ones, chunk by chunk, as the products are
// summed), times -(2 + 8 / 64) for symmetric groups (asymmetric ones multiply per row).
struct Corrections {
  std::vector<float> lanes;  // [token][segment][16]
  int64_t segments = 0;
  const float* At(int64_t t, int64_t segment) const {
    return lanes.data() + (t * segments + segment) * 16;
  }
};

void ComputeCorrections(const uint16_t* x, int64_t ldx, int64_t n, int64_t k,
                        const Q4Groups& groups, Corrections& c) {
  const int64_t first = groups.Group(0);
  c.segments = groups.Group(k - 1) - first + 1;
  c.lanes.resize(static_cast<size_t>(n * c.segments * 16));
  const __m512bh ones = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3f80));
  const float factor = groups.zero_points == nullptr
                           ? -(kQ4Offset + static_cast<float>(kQ4SymmetricZero) / kQ4Unscale)
                           : 1.0f;
  for (int64_t t = 0; t < n; ++t) {
    int64_t i = 0;
    for (int64_t s = 0; s < c.segments; ++s) {
      const int64_t end = std::min(k, (first + s + 1) * groups.block_cols - groups.col_offset);
      __m512 sum = _mm512_setzero_ps();
      for (; i < end; i += 32) {
        sum = _mm512_dpbf16_ps(sum, reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + t * ldx + i)),
                               ones);
      }
      _mm512_storeu_ps(c.lanes.data() + (t * c.segments + s) * 16,
                       _mm512_mul_ps(sum, _mm512_set1_ps(factor)));
    }
  }
}

// R rows x T tokens. Per group: the accumulators start at the correction, take the chunks'
// products in ascending order, and enter the totals times 64 x scale (in two steps where that
// product overflows). The totals live in memory (16 lanes each, in the L1), which leaves the
// registers to the group's R x T accumulators: up to 4 x 6 with widened weights (24, the 4
// weight vectors and an activation: 29 of 32), so one weight load feeds 6 VDPBF16PS. With
// packed weights and up to 2 tokens, whole 64-wide units inside a group take one load for both
// halves; 3 tokens leave no registers for a unit's words, so there each chunk loads its unit.
template <int R, int T, bool kAsymmetric, typename Weights>
__attribute__((noinline)) void MicroKernel(const uint16_t* x, int64_t ldx, int64_t k,
                                           const Weights& weights, const Q4Groups& groups,
                                           int64_t row, const Corrections& corrections, int64_t t0,
                                           float* out, int64_t ldo, const uint8_t* next,
                                           int64_t ldw, float* totals_scratch) {
  // The totals, [R][T][16], in the caller's scratch: GCC splits a local array into copies that
  // it moves through the stack at every fold.
  // With packed weights (up to 3 tokens) they fit in registers beside the segment sums, which
  // keeps the load and store of every fold off one token's path.
  constexpr bool kInRegisters = std::is_same_v<Weights, PackedQ4>;
  const auto totals = reinterpret_cast<float(*)[T][16]>(totals_scratch);
  __m512 acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      if constexpr (kInRegisters) {
        acc[r][t] = _mm512_setzero_ps();
      } else {
        _mm512_store_ps(totals[r][t], _mm512_setzero_ps());
      }
    }
  }
  const auto total = [&](int r, int t) {
    if constexpr (kInRegisters) {
      return acc[r][t];
    } else {
      return _mm512_load_ps(totals[r][t]);
    }
  };
  const auto set_total = [&](int r, int t, __m512 v) {
    if constexpr (kInRegisters) {
      acc[r][t] = v;
    } else {
      _mm512_store_ps(totals[r][t], v);
    }
  };
  const float* scale_rows[R];
  const float* zero_rows[R];
  for (int r = 0; r < R; ++r) {
    const int64_t base = groups.Row(row + r);
    scale_rows[r] = groups.scales + base;
    zero_rows[r] = kAsymmetric ? groups.zero_points + base : nullptr;
  }
  __m512 part[R][T];
  const auto multiply = [&](int64_t i, const __m512i(&wv)[R]) {
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + t * ldx + i));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        part[r][t] = _mm512_dpbf16_ps(part[r][t], reinterpret_cast<__m512bh>(wv[r]), xv);
      }
    }
  };
  const int64_t whole = k & ~int64_t{63};
  const int64_t first = groups.Group(0);
  int64_t i = 0;
  for (int64_t segment = 0; i < k; ++segment) {
    const int64_t group = first + segment;
    const int64_t end = std::min(k, (group + 1) * groups.block_cols - groups.col_offset);
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m512 lanes = _mm512_loadu_ps(corrections.At(t0 + t, segment));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        part[r][t] =
            kAsymmetric
                ? _mm512_mul_ps(lanes,
                                _mm512_set1_ps(-(kQ4Offset + zero_rows[r][group] / kQ4Unscale)))
                : lanes;
      }
    }
    __m512i wv[R];
    if constexpr (std::is_same_v<Weights, PackedQ4> && T < 3) {
      for (; i % 64 == 0 && i + 64 <= std::min(end, whole); i += 64) {
        if (next != nullptr && i % 128 == 0) {
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r) streaming::PrefetchLine(next + r * ldw + i / 2);
        }
        __m512i words[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          words[r] = weights.UnitWords(r, i);
          wv[r] = LowHalf(words[r]);
        }
        multiply(i, wv);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) wv[r] = HighHalf(words[r]);
        multiply(i + 32, wv);
      }
    }
    for (; i < end; i += kQ4Unit) {
      if (next != nullptr && i % 128 == 0) {
        for (int r = 0; r < R; ++r) streaming::PrefetchLine(next + r * ldw + i / 2);
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) wv[r] = weights.Chunk(r, i);
      multiply(i, wv);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      AddScaledParts(
          part[r], scale_rows[r][group], kQ4Unscale, [&](int t) { return total(r, t); },
          [&](int t, __m512 v) { set_total(r, t, v); });
    }
    // Memory totals stay in memory from fold to fold: without this barrier GCC keeps them in
    // registers across the groups and spills the accumulators around every group's loop.
    if constexpr (!kInRegisters) asm volatile("" ::: "memory");
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) out[t * ldo + r] = Avx512HorizontalSum(total(r, t));
  }
}

// Row r's k values as the bf16 weights the micro-kernel multiplies. While it reads, it
// prefetches the same bytes of the row `ahead` (if any, a later strip's) into the L2: the token
// groups that multiply this strip then hide the memory's latency for the next one, which the
// widening otherwise waited on.
void WidenRow(const uint8_t* row, int64_t k, const uint8_t* ahead, uint16_t* out) {
  const int64_t whole = k & ~int64_t{63};
  int64_t i = 0;
  for (; i < whole; i += 64) {
    if (ahead != nullptr && i % 128 == 0) __builtin_prefetch(ahead + i / 2, 0, 2);
    const __m512i words = LoadUnitWords(row + i / 2);
    _mm512_storeu_si512(out + i, LowHalf(words));
    _mm512_storeu_si512(out + i + 32, HighHalf(words));
  }
  if (i < k) _mm512_storeu_si512(out + i, LoadTail(row + i / 2));
}

template <bool kAsymmetric>
void Gemm(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
          int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) {
  thread_local Corrections corrections;
  ComputeCorrections(x, ldx, n, k, groups, corrections);
  alignas(64) float totals[4 * 6 * 16];
  if (n <= 3) {
    streaming::ForRowStrips(
        rows,
        [&]<int R>(int64_t r, int64_t next_row) {
          const uint8_t* next = next_row < 0 ? nullptr : w + next_row * ldw;
          streaming::ForTokenGroups<3>(n, [&]<int T>(int64_t t) {
            MicroKernel<R, T, kAsymmetric>(x + t * ldx, ldx, k, PackedQ4{w + r * ldw, ldw, k},
                                           groups, r, corrections, t, out + t * ldo + r, ldo, next,
                                           ldw, totals);
          });
        },
        streaming::StripsAheadForBytes(ldw, 8192));
    return;
  }
  thread_local std::vector<uint16_t> widened;
  widened.resize(static_cast<size_t>(4 * k));
  streaming::ForRowStrips(rows, [&]<int R>(int64_t r, int64_t next_row) {
    for (int j = 0; j < R; ++j) {
      WidenRow(w + (r + j) * ldw, k, next_row < 0 ? nullptr : w + (next_row + j) * ldw,
               widened.data() + j * k);
    }
    streaming::ForTokenGroups<6>(n, [&]<int T>(int64_t t) {
      MicroKernel<R, T, kAsymmetric>(x + t * ldx, ldx, k, WidenedQ4{widened.data(), k}, groups, r,
                                     corrections, t, out + t * ldo + r, ldo, nullptr, ldw, totals);
    });
  });
}

}  // namespace

void GemmQ4XBf16(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w,
                 int64_t ldw, int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) {
  if (groups.zero_points == nullptr) {
    Gemm<false>(x, ldx, n, k, w, ldw, rows, groups, out, ldo);
  } else {
    Gemm<true>(x, ldx, n, k, w, ldw, rows, groups, out, ldo);
  }
}

}  // namespace expertmesh::kernels::cpu
