// The streaming GEMM with bf16 weights and bf16 activations on AVX512_BF16 (VDPBF16PS: 16 lanes,
// each adding the products of two adjacent bf16 pairs to an fp32 accumulator). Weights are used
// as stored, with no widening, and each instruction does two multiply-adds per lane, so
// batched bf16 decode and prefill do twice the work per instruction of the AVX-512F kernel.
// This file alone is compiled with -mavx512bf16; nothing here runs unless
// CpuSupports(CpuIsa::kAvx512Bf16).
#include <immintrin.h>

#include "common/dtype.h"
#include "kernels/cpu/avx512_sum.h"
#include "kernels/cpu/kernel_table.h"
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
