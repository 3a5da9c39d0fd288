// The inner loops that differ per instruction set, as a table of function pointers chosen once
// per backend (scalar, AVX2, AVX-512, AVX512_BF16 or AMX). Everything else in kernels/cpu is
// ISA-independent and calls through this table.
#ifndef EXPERTMESH_KERNELS_CPU_KERNEL_TABLE_H_
#define EXPERTMESH_KERNELS_CPU_KERNEL_TABLE_H_

#include <cstdint>

#include "kernels/cpu/cpu_features.h"

namespace expertmesh::kernels::cpu {

// The block scales of an fp8 weight as the kernels read them (kernels::BlockScales with raw
// pointers): weight element [r][i] is its e4m3 value times
//   scales[((r + row_offset) / block_rows) * ld + (i + col_offset) / block_cols].
struct Fp8Scales {
  const float* scales = nullptr;
  int64_t ld = 0;  // scale columns per scale row
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  int64_t row_offset = 0;
  int64_t col_offset = 0;
  // The scale row of weight row r.
  const float* Row(int64_t r) const { return scales + ((r + row_offset) / block_rows) * ld; }
};

// The groups of a q4 weight as the kernels read them (kernels::BlockScales with raw pointers):
// weight element [r][i], with q its 4-bit value (kernels/q4_layout.h), is
//   (q - zero) * scale,  scale = scales[Index(r, i)],  zero = zero_points[Index(r, i)] or 8.
// Groups are multiples of 32 values and start at multiples of 32 (col_offset too), so a 32-value
// unit never straddles two groups.
struct Q4Groups {
  const float* scales = nullptr;
  const float* zero_points = nullptr;  // null: symmetric, every zero point is 8
  int64_t ld = 0;                      // groups per scale row
  int64_t block_rows = 1;
  int64_t block_cols = 128;  // the group size
  int64_t row_offset = 0;
  int64_t col_offset = 0;
  // Offset of row r's first group entry in scales / zero_points (no division for the usual
  // one row per group: the kernels ask per row and strip).
  int64_t Row(int64_t r) const {
    return (block_rows == 1 ? r + row_offset : (r + row_offset) / block_rows) * ld;
  }
  // The group of value i of a row, relative to Row(r).
  int64_t Group(int64_t i) const { return (i + col_offset) / block_cols; }
};

// The AMX kernels' layout of packed activations (KernelTable::amx_pack_x): blocks of
// kAmxTileTokens tokens, each a run of k tiles of kAmxTileK values; one tile is
// kAmxTileK / 2 rows of kAmxTileTokens (x[t][2p], x[t][2p + 1]) pairs. Zero-padded in tokens and k.
inline constexpr int kAmxTileK = 32;
inline constexpr int kAmxTileTokens = 16;
inline constexpr int64_t kAmxPackedTileElems = kAmxTileK * kAmxTileTokens;
// bf16 elements amx_pack_x writes for n tokens of k values.
inline int64_t AmxPackedXElements(int64_t n, int64_t k) {
  return (n + kAmxTileTokens - 1) / kAmxTileTokens * ((k + kAmxTileK - 1) / kAmxTileK) *
         kAmxPackedTileElems;
}

// The most keys one qk_bf16 call takes (attention's key block).
inline constexpr int64_t kQkMaxKeys = 64;

struct KernelTable {
  // out[t * ldo + r] = sum_i x[t * ldx + i] * w[r * ldw + i] for t < n, r < rows, i < k,
  // accumulated in fp32 in a fixed order (independent of n: a token's result does not depend on
  // its batch). Row strides let attention read keys straight from the paged cache.
  //   x: [n, ldx] f32;  w: [rows, ldw] bf16 (raw bits) or f32;  out: [n, ldo] f32.
  void (*gemm_bf16)(const float* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w,
                    int64_t ldw, int64_t rows, float* out, int64_t ldo);
  void (*gemm_f32)(const float* x, int64_t ldx, int64_t n, int64_t k, const float* w, int64_t ldw,
                   int64_t rows, float* out, int64_t ldo);
  // As gemm_bf16 with fp8 e4m3 weights [rows, ldw] (one byte each) multiplied by their block
  // scales, summed in an order independent of n. The scalar family multiplies each weight's
  // value times its scale, rounded once to fp32 (as dequantizing it first would give); AVX2 and
  // AVX-512F put the scales on the activations instead (streaming::GemmFp8ScaledF32: x s rounded
  // once to fp32, the same relative 2^-24 per product) and multiply the exact e4m3 values.
  void (*gemm_f8)(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
                  int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo);
  // out[i] = e4m3 value of in[i] times `scale`, for n elements (a prefill tile for sgemm).
  void (*f8_to_f32)(const uint8_t* in, float scale, float* out, int64_t n);
  // As gemm_bf16 with q4 weights: rows of k 4-bit values (k a multiple of 32, ldw bytes apart,
  // kernels/q4_layout.h) and their groups (row r of w is row r of `groups`). Each weight is
  // (q - zero) * scale rounded once to fp32, as dequantizing it first would give, summed in an
  // order independent of n.
  void (*gemm_q4)(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
                  int64_t rows, const Q4Groups& groups, float* out, int64_t ldo);
  // Row r of a q4 weight (its k values at `row`) dequantized to fp32: (q - zero) * scale.
  void (*q4_to_f32)(const uint8_t* row, int64_t k, const Q4Groups& groups, int64_t r, float* out);
  // Conversions of n elements; f32 -> bf16 rounds to nearest even, NaN stays NaN.
  void (*bf16_to_f32)(const uint16_t* in, float* out, int64_t n);
  void (*f32_to_bf16)(const float* in, uint16_t* out, int64_t n);
  // Attention's probability-weighted sum of values, positions in ascending order:
  //   acc[r * ldacc + d] += sum_{j < npos} p[r * ldp + j] * v[j * ldv + d], r < rows, d < dv.
  // Each value row is loaded once for all rows (the q heads sharing a kv head).
  void (*pv_bf16)(const float* p, int64_t ldp, int64_t rows, int64_t npos, const uint16_t* v,
                  int64_t ldv, int64_t dv, float* acc, int64_t ldacc);
  void (*pv_f32)(const float* p, int64_t ldp, int64_t rows, int64_t npos, const float* v,
                 int64_t ldv, int64_t dv, float* acc, int64_t ldacc);
  // Attention's scores against one block of nk <= kQkMaxKeys keys (keys[j]: key j's dk bf16
  // values), on AVX-512 (nullptr elsewhere: attention calls gemm_bf16):
  //   s[r * lds + j] = sum_{d < dk} q[r * ldq + d] * key_j[d],  r < rows, j < nk,
  // each one chain of fp32 FMAs in ascending d, so a score depends on its query and key only
  // (not on the other rows, on nk, or on where the key sits in the block).
  void (*qk_bf16)(const float* q, int64_t ldq, int64_t rows, int64_t dk,
                  const uint16_t* const* keys, int64_t nk, float* s, int64_t lds) = nullptr;
  // Attention's two products with bf16 operands on CPUs with a bf16 dot-product instruction
  // (AVX512_BF16; nullptr elsewhere), for bf16 queries and caches:
  //   qk_bf16_dot: s[r * lds + j] = sum_{d < dk} q[r * ldq + d] * key_j[d], r < rows,
  //     j < nk <= kQkMaxKeys. q's rows hold dk values rounded up to even, the last zero where
  //     dk is odd.
  //   pv_bf16_dot: acc[r * ldacc + d] += sum_{j < npos} p[r * ldp + j] * values[j][d],
  //     r < rows, d < dv, npos <= kQkMaxKeys, with bf16 probabilities (rounded as the AMX
  //     tiles and GPU flash attention round them). p's rows hold npos values rounded up to even,
  //     the last zero where npos is odd.
  // Each sum runs over pairs (of d, of positions) in ascending order, one fp32 chain per
  // result, the pair's two exact products added by the instruction: a result depends on its
  // row and its keys or values only, never on the other rows, nk or npos.
  void (*qk_bf16_dot)(const uint16_t* q, int64_t ldq, int64_t rows, int64_t dk,
                      const uint16_t* const* keys, int64_t nk, float* s, int64_t lds) = nullptr;
  void (*pv_bf16_dot)(const uint16_t* p, int64_t ldp, int64_t rows, int64_t npos,
                      const uint16_t* const* values, int64_t dv, float* acc,
                      int64_t ldacc) = nullptr;
  // As gemm_bf16 with bf16 activations (bf16 compute mode), on CPUs with a bf16 dot-product
  // instruction (AVX512_BF16); nullptr elsewhere. Products of bf16 values are exact in fp32,
  // so this computes the same sums as widening x first, in another order (and with the
  // instruction's denormals-are-zero).
  void (*gemm_bf16_xbf16)(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w,
                          int64_t ldw, int64_t rows, float* out, int64_t ldo) = nullptr;
  // gemm_f8 with bf16 activations on AVX512_BF16 (nullptr elsewhere): the e4m3 weights become
  // bf16 in registers (exact, but for e4m3 subnormals, which the instruction reads as zero) and
  // multiply each token's activations times their column's block scale (that of the row's scale
  // row), rounded to bf16: every product w x bf16(x s) is within a relative 2^-9 of w s x, as
  // with a bf16 checkpoint's weights; one fp32 sum per row and token over all of k, the same
  // whatever n (kernels_avx512_bf16.cc). Where x s would overflow (|x s| >= 2^28), the products
  // of each scale block are summed exactly and scaled once per block instead.
  void (*gemm_f8_xbf16)(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w,
                        int64_t ldw, int64_t rows, const Fp8Scales& scales, float* out,
                        int64_t ldo) = nullptr;
  // gemm_q4 with bf16 activations on AVX512_BF16 (nullptr elsewhere): each weight is exactly
  // (q - zero) * scale, as in gemm_q4; the products of a group are summed in fp32 (VDPBF16PS)
  // and scaled once per group (kernels_avx512_bf16_q4.cc). The bits of a token's output do not
  // depend on n.
  void (*gemm_q4_xbf16)(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w,
                        int64_t ldw, int64_t rows, const Q4Groups& groups, float* out,
                        int64_t ldo) = nullptr;
  // Rows [0, rows) of a q4 weight [rows, ldw] (k a multiple of 32) as the bf16 values
  // amx_gemm_q4 multiplies (bf16((q - zero) * scale)) into out [rows, k]; meanwhile the same
  // bytes of the `rows` rows at `next` (nullptr: none) are prefetched. On AVX512_BF16 (nullptr
  // elsewhere), for products with many tokens per weight: gemm_bf16_xbf16 then multiplies the
  // widened rows (cpu_linear.cc).
  void (*widen_q4_bf16)(const uint8_t* w, int64_t ldw, int64_t rows, int64_t k,
                        const Q4Groups& groups, const uint8_t* next, uint16_t* out) = nullptr;
  // The AMX family's bf16 x bf16 GEMM (nullptr elsewhere), in two steps so that activations
  // are packed once per product however many threads multiply them:
  //  - amx_pack_x: x [n, ldx] bf16 into `packed` (AmxPackedXElements(n, k) values, layout above).
  //  - amx_gemm_bf16: out[t * ldo + r] = sum_i x[t][i] * w[r * ldw + i] for t < n, r < rows from
  //    the packed x, in fp32 tiles (TDPBF16PS). Each output is the same chain of tile products
  //    over k in ascending order whatever n, t or rows (batching invariance); the order inside
  //    one instruction is the hardware's, so the bits differ from gemm_bf16_xbf16's.
  //    The calling thread must be allowed to use AMX (CpuSupports(CpuIsa::kAmx) asked Linux).
  void (*amx_pack_x)(const uint16_t* x, int64_t ldx, int64_t n, int64_t k,
                     uint16_t* packed) = nullptr;
  void (*amx_gemm_bf16)(const uint16_t* packed_x, int64_t n, int64_t k, const uint16_t* w,
                        int64_t ldw, int64_t rows, float* out, int64_t ldo) = nullptr;
  // amx_gemm_bf16 with fp8 e4m3 weights [rows, ldw] and their block scales: each weight becomes
  // bf16(fp32(value x scale)) (nearest even; so within a relative 2^-9 of the dequantized
  // weight, as a bf16 checkpoint's weights are; e4m3 subnormals read as zero), multiplied as
  // amx_gemm_bf16 multiplies bf16 weights. Any scale block shape and offsets.
  void (*amx_gemm_f8)(const uint16_t* packed_x, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
                      int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) = nullptr;
  // amx_gemm_bf16 with q4 weights: each weight becomes bf16((q - zero) * scale) (nearest even:
  // within a relative 2^-9 of the dequantized weight, as a bf16 checkpoint's weights are; the
  // per-group tables of q4_bf16.h), widened block by block, and is multiplied as amx_gemm_bf16
  // multiplies bf16 weights.
  void (*amx_gemm_q4)(const uint16_t* packed_x, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
                      int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) = nullptr;
};

const KernelTable& ScalarKernels();
const KernelTable& Avx2Kernels();    // REQUIRES: CpuSupports(CpuIsa::kAvx2)
const KernelTable& Avx512Kernels();  // REQUIRES: CpuSupports(CpuIsa::kAvx512)
// Sets the AVX-512 attention products (attention_avx512.cc) in a table built on Avx512Kernels.
void AddAvx512AttentionKernels(KernelTable& table);
// Sets the bf16 dot-product attention products (attention_avx512_bf16.cc) in a table built on
// Avx512Bf16Kernels.
void AddAvx512Bf16AttentionKernels(KernelTable& table);
const KernelTable& Avx512Bf16Kernels();  // REQUIRES: CpuSupports(CpuIsa::kAvx512Bf16)
const KernelTable& AmxKernels();         // REQUIRES: CpuSupports(CpuIsa::kAmx)
const KernelTable& KernelsFor(CpuIsa isa);

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_KERNEL_TABLE_H_
