// AVX-512F GEMM inner loops (the decode/streaming GEMM of cpu_linear.cc at 16 fp32 lanes). This
// file alone is compiled with -mavx512f -mfma; nothing here runs unless
// CpuSupports(CpuIsa::kAvx512). Attention's products are in attention_avx512.cc; the other
// kernels of the table are the AVX2 ones: they are memory-bound or small, and the GEMM is where
// batched decode spends its time.
//
// Same structure as kernels_avx2.cc: weights widened from bf16 in registers, R weight rows x T
// tokens per micro-kernel, every token accumulated in the same order whatever T is (so a
// token's output does not depend on its neighbours). The lane order differs from the AVX2
// kernel, so results agree with it to fp32 rounding, not bit for bit.
#include <immintrin.h>

#include "common/dtype.h"
#include "kernels/cpu/avx512_sum.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/streaming_gemm.h"

namespace expertmesh::kernels::cpu {
namespace {

inline __m512 LoadW(const uint16_t* p) { return LoadBf16AsF32(p); }
inline __m512 LoadW(const float* p) { return _mm512_loadu_ps(p); }
// 16 e4m3 values as fp32 times 2^-120 (the AVX2 file's LoadW8 explains the bit trick).
inline __m512 LoadW8(const uint8_t* p) {
  const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_slli_epi32(v, 20), _mm512_set1_epi32(static_cast<int>(0x87f00000u))));
}

// 16 q4 values from `offset` of a unit of half width `half` (kernels/q4_layout.h) as fp32: the
// low nibbles of 16 bytes for the first half, their high nibbles for the second.
inline __m512 LoadQ4(const uint8_t* unit, int64_t half, int64_t offset) {
  const bool high = offset >= half;
  const __m512i bytes = _mm512_cvtepu8_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(unit + (high ? offset - half : offset))));
  const __m512i q =
      high ? _mm512_srli_epi32(bytes, 4) : _mm512_and_si512(bytes, _mm512_set1_epi32(0x0f));
  return _mm512_cvtepi32_ps(q);
}

struct Avx512Policy {
  using Acc = __m512;
  static constexpr int kStep = 16;
  static Acc Zero() { return _mm512_setzero_ps(); }
  template <typename W>
  static __m512 LoadW(const W* w) {
    return cpu::LoadW(w);
  }
  static __m512 LoadX(const float* x) { return _mm512_loadu_ps(x); }
  static Acc Madd(Acc acc, __m512 w, __m512 x) { return _mm512_fmadd_ps(w, x, acc); }
  static float Sum(Acc acc) { return Avx512HorizontalSum(acc); }
  static void Sum4(Acc a, Acc b, Acc c, Acc d, float* out) {
    Avx512HorizontalSum4(a, b, c, d, out);
  }
  static __m512 LoadW8(const uint8_t* w) { return cpu::LoadW8(w); }
  static float TailW8(uint8_t byte) { return F8E4M3ToFloat(byte) * 0x1p-120f; }  // exact
  static __m512 Mul(__m512 w, float s) { return _mm512_mul_ps(w, _mm512_set1_ps(s)); }
  static __m512 LoadQ4(const uint8_t* unit, int64_t half, int64_t offset) {
    return cpu::LoadQ4(unit, half, offset);
  }
  static __m512 Dequant(__m512 q, float zero, float scale) {
    return _mm512_mul_ps(_mm512_sub_ps(q, _mm512_set1_ps(zero)), _mm512_set1_ps(scale));
  }
};

// Tokens in groups of up to 6: 24 accumulators + 4 weight vectors + 1 token vector of 32 registers.
void GemmBf16(const float* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w, int64_t ldw,
              int64_t rows, float* out, int64_t ldo) {
  streaming::Gemm<Avx512Policy, 6>(x, ldx, n, k, w, ldw, rows, out, ldo);
}
void GemmF32(const float* x, int64_t ldx, int64_t n, int64_t k, const float* w, int64_t ldw,
             int64_t rows, float* out, int64_t ldo) {
  streaming::Gemm<Avx512Policy, 6>(x, ldx, n, k, w, ldw, rows, out, ldo);
}

void GemmF8(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  streaming::GemmFp8ScaledF32<Avx512Policy, 6>(x, ldx, n, k, w, ldw, rows, scales, out, ldo);
}

void GemmQ4(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) {
  streaming::GemmQ4<Avx512Policy, 6>(x, ldx, n, k, w, ldw, rows, groups, out, ldo);
}

}  // namespace

const KernelTable& Avx512Kernels() {
  static const KernelTable table = [] {
    KernelTable t = Avx2Kernels();
    t.gemm_bf16 = GemmBf16;
    t.gemm_f32 = GemmF32;
    t.gemm_f8 = GemmF8;
    t.gemm_q4 = GemmQ4;
    AddAvx512AttentionKernels(t);
    return t;
  }();
  return table;
}

}  // namespace expertmesh::kernels::cpu
