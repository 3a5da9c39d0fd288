// AVX2 + FMA + F16C inner loops. This file alone is compiled with -mavx2 -mfma -mf16c; nothing
// here runs unless CpuSupports(CpuIsa::kAvx2) (the backend checks before picking this table).
//
// The decode GEMM is memory-bound: each weight is read from DRAM once, widened from bf16 to
// fp32 in registers (a byte shuffle into the top halves of 32-bit lanes) and used for up to 3
// tokens at a time; further token groups re-read the same 4-row strip from L1/L2.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "common/dtype.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/streaming_gemm.h"
#include "kernels/q4_layout.h"

namespace expertmesh::kernels::cpu {
namespace {

// 8 bf16 weights as fp32: the 16 bytes broadcast to both 128-bit lanes (a load-port operation),
// then one byte shuffle puts weights 0-3 (low lane) and 4-7 (high lane) into the top halves of
// the 32-bit lanes and zeroes the bottom halves. Zero-extending and shifting instead cost a
// shift on the ports the FMAs need (4 per 12 FMAs of the batched micro-kernel).
inline __m256 LoadW(const uint16_t* p) {
  const __m256i raw =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i to_high_halves =
      _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1, 6, 7,  //
                       -1, -1, 8, 9, -1, -1, 10, 11, -1, -1, 12, 13, -1, -1, 14, 15);
  return _mm256_castsi256_ps(_mm256_shuffle_epi8(raw, to_high_halves));
}
inline __m256 LoadW(const float* p) { return _mm256_loadu_ps(p); }
// 8 e4m3 values as fp32, each times 2^-120: sign-extending the byte to 32 bits and shifting it
// left by 20 puts the sign in bit 31 (with copies in 30..27, masked off) and exponent|mantissa
// in bits 26..20, the top of an fp32 exponent of 4 bits less bias and its mantissa: an exact
// fp32 for normals and subnormals alike. (The e4m3 NaN pattern reads as 480 * 2^-120.)
inline __m256 LoadW8(const uint8_t* p) {
  const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(
      _mm256_and_si256(_mm256_slli_epi32(v, 20), _mm256_set1_epi32(static_cast<int>(0x87f00000u))));
}
// 8 q4 values from `offset` of a unit of half width `half` (kernels/q4_layout.h) as fp32: the
// low nibbles of 8 bytes for the first half, their high nibbles for the second.
inline __m256 LoadQ4(const uint8_t* unit, int64_t half, int64_t offset) {
  const bool high = offset >= half;
  const __m256i bytes = _mm256_cvtepu8_epi32(
      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(unit + (high ? offset - half : offset))));
  const __m256i q =
      high ? _mm256_srli_epi32(bytes, 4) : _mm256_and_si256(bytes, _mm256_set1_epi32(0x0f));
  return _mm256_cvtepi32_ps(q);
}
inline float ScalarW(uint16_t v) { return Bf16ToFloat(v); }
inline float ScalarW(float v) { return v; }

// Sums the 8 lanes in the order ((0+4)+(1+5))+((2+6)+(3+7)), as the scalar path does.
inline float HorizontalSum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  const __m128 s = _mm_add_ps(lo, hi);                  // (0+4) (1+5) (2+6) (3+7)
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));  // (0+4)+(2+6), (1+5)+(3+7)
  const __m128 u = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
  return _mm_cvtss_f32(u);
}

// The streaming GEMM's SIMD policy (streaming_gemm.h): 8 fp32 lanes, bf16 widened in registers.
struct Avx2Policy {
  using Acc = __m256;
  static constexpr int kStep = 8;
  static Acc Zero() { return _mm256_setzero_ps(); }
  template <typename W>
  static __m256 LoadW(const W* w) {
    return cpu::LoadW(w);
  }
  static __m256 LoadX(const float* x) { return _mm256_loadu_ps(x); }
  static Acc Madd(Acc acc, __m256 w, __m256 x) { return _mm256_fmadd_ps(w, x, acc); }
  static float Sum(Acc acc) { return HorizontalSum(acc); }
  static __m256 LoadW8(const uint8_t* w) { return cpu::LoadW8(w); }
  static float TailW8(uint8_t byte) { return F8E4M3ToFloat(byte) * 0x1p-120f; }  // exact
  static __m256 Mul(__m256 w, float s) { return _mm256_mul_ps(w, _mm256_set1_ps(s)); }
  static __m256 LoadQ4(const uint8_t* unit, int64_t half, int64_t offset) {
    return cpu::LoadQ4(unit, half, offset);
  }
  static __m256 Dequant(__m256 q, float zero, float scale) {
    return _mm256_mul_ps(_mm256_sub_ps(q, _mm256_set1_ps(zero)), _mm256_set1_ps(scale));
  }
};

// Tokens in groups of 3: 12 accumulators + 4 weight vectors of the 16 registers.
void GemmBf16(const float* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w, int64_t ldw,
              int64_t rows, float* out, int64_t ldo) {
  streaming::Gemm<Avx2Policy, 3>(x, ldx, n, k, w, ldw, rows, out, ldo);
}
void GemmF32(const float* x, int64_t ldx, int64_t n, int64_t k, const float* w, int64_t ldw,
             int64_t rows, float* out, int64_t ldo) {
  streaming::Gemm<Avx2Policy, 3>(x, ldx, n, k, w, ldw, rows, out, ldo);
}

void GemmF8(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  streaming::GemmFp8ScaledF32<Avx2Policy, 3>(x, ldx, n, k, w, ldw, rows, scales, out, ldo);
}

void GemmQ4(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) {
  streaming::GemmQ4<Avx2Policy, 3>(x, ldx, n, k, w, ldw, rows, groups, out, ldo);
}

void Q4ToF32(const uint8_t* row, int64_t k, const Q4Groups& groups, int64_t r, float* out) {
  const int64_t base = groups.Row(r);
  for (int64_t i = 0; i < k; i += kQ4Unit) {
    const int64_t g = base + groups.Group(i);
    const float zero = groups.zero_points == nullptr ? static_cast<float>(kQ4SymmetricZero)
                                                     : groups.zero_points[g];
    const Q4Position pos = Q4PositionOf(k, i);
    for (int part = 0; part < 4; ++part) {
      const __m256 q = LoadQ4(row + pos.unit_byte, pos.half, pos.offset + 8 * part);
      _mm256_storeu_ps(out + i + 8 * part, Avx2Policy::Dequant(q, zero, groups.scales[g]));
    }
  }
}

void F8ToF32(const uint8_t* in, float scale, float* out, int64_t n) {
  // Two roundings would differ from the reference: fold 2^120 into the scale when it stays
  // finite (one exact product), else apply it first.
  const float folded = scale * 0x1p120f;
  const bool fold = std::fabs(folded) <= std::numeric_limits<float>::max();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = LoadW8(in + i);
    if (!fold) v = _mm256_mul_ps(v, _mm256_set1_ps(0x1p120f));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(v, _mm256_set1_ps(fold ? folded : scale)));
  }
  for (; i < n; ++i) out[i] = F8E4M3ToFloat(in[i]) * scale;
}

void Bf16ToF32(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, LoadW(in + i));
  for (; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
}

void F32ToBf16(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
  const __m256i lsb_mask = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i quiet = _mm256_set1_epi32(0x0040);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    const __m256i bits = _mm256_castps_si256(v);
    // Round to nearest even: add 0x7fff + lsb of the kept part, then drop 16 bits.
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), lsb_mask);
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(bias, lsb)), 16);
    // NaN: keep the top half and set the quiet bit, as FloatToBf16.
    const __m256i nan_bits = _mm256_or_si256(_mm256_srli_epi32(bits, 16), quiet);
    const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    rounded = _mm256_blendv_epi8(rounded, nan_bits, is_nan);
    // Pack 8 x u32 (each < 65536) into 8 x u16.
    const __m128i lo = _mm256_castsi256_si128(rounded);
    const __m128i hi = _mm256_extracti128_si256(rounded, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_packus_epi32(lo, hi));
  }
  for (; i < n; ++i) out[i] = FloatToBf16(in[i]);
}

// Up to 4 rows x one 8-wide column chunk per pass, positions ascending; tails are scalar.
template <int R, typename V>
inline void PvRows(const float* p, int64_t ldp, int64_t npos, const V* v, int64_t ldv, int64_t dv,
                   float* acc, int64_t ldacc) {
  int64_t d = 0;
  for (; d + 8 <= dv; d += 8) {
    __m256 a[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_ps(acc + r * ldacc + d);
    for (int64_t j = 0; j < npos; ++j) {
      const __m256 vv = LoadW(v + j * ldv + d);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(_mm256_set1_ps(p[r * ldp + j]), vv, a[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + r * ldacc + d, a[r]);
  }
  for (; d < dv; ++d) {
    for (int r = 0; r < R; ++r) {
      float s = acc[r * ldacc + d];
      for (int64_t j = 0; j < npos; ++j) s += p[r * ldp + j] * ScalarW(v[j * ldv + d]);
      acc[r * ldacc + d] = s;
    }
  }
}

template <typename V>
void Pv(const float* p, int64_t ldp, int64_t rows, int64_t npos, const V* v, int64_t ldv,
        int64_t dv, float* acc, int64_t ldacc) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    PvRows<4>(p + r * ldp, ldp, npos, v, ldv, dv, acc + r * ldacc, ldacc);
  for (; r < rows; ++r) PvRows<1>(p + r * ldp, ldp, npos, v, ldv, dv, acc + r * ldacc, ldacc);
}
void PvBf16(const float* p, int64_t ldp, int64_t rows, int64_t npos, const uint16_t* v, int64_t ldv,
            int64_t dv, float* acc, int64_t ldacc) {
  Pv(p, ldp, rows, npos, v, ldv, dv, acc, ldacc);
}
void PvF32(const float* p, int64_t ldp, int64_t rows, int64_t npos, const float* v, int64_t ldv,
           int64_t dv, float* acc, int64_t ldacc) {
  Pv(p, ldp, rows, npos, v, ldv, dv, acc, ldacc);
}

}  // namespace

const KernelTable& Avx2Kernels() {
  static const KernelTable table{.gemm_bf16 = GemmBf16,
                                 .gemm_f32 = GemmF32,
                                 .gemm_f8 = GemmF8,
                                 .f8_to_f32 = F8ToF32,
                                 .gemm_q4 = GemmQ4,
                                 .q4_to_f32 = Q4ToF32,
                                 .bf16_to_f32 = Bf16ToF32,
                                 .f32_to_bf16 = F32ToBf16,
                                 .pv_bf16 = PvBf16,
                                 .pv_f32 = PvF32};
  return table;
}

}  // namespace expertmesh::kernels::cpu
