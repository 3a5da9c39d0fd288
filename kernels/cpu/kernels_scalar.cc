// Portable inner loops: the reference path every machine runs and tests force.
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/q4_layout.h"

namespace expertmesh::kernels::cpu {
namespace {

// Eight partial sums, like an 8-lane vector, so the scalar path rounds like the AVX2 path would
// for most inputs and the compiler can vectorise it.
template <typename W, float (*Load)(W)>
void Gemm(const float* x, int64_t ldx, int64_t n, int64_t k, const W* w, int64_t ldw, int64_t rows,
          float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const W* wr = w + r * ldw;
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * ldx;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= k; i += 8) {
        for (int j = 0; j < 8; ++j) acc[j] += xt[i + j] * Load(wr[i + j]);
      }
      float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
      for (; i < k; ++i) sum += xt[i] * Load(wr[i]);
      out[t * ldo + r] = sum;
    }
  }
}

float LoadBf16(uint16_t v) { return Bf16ToFloat(v); }
float LoadF32(float v) { return v; }

void GemmBf16(const float* x, int64_t ldx, int64_t n, int64_t k, const uint16_t* w, int64_t ldw,
              int64_t rows, float* out, int64_t ldo) {
  Gemm<uint16_t, LoadBf16>(x, ldx, n, k, w, ldw, rows, out, ldo);
}
void GemmF32(const float* x, int64_t ldx, int64_t n, int64_t k, const float* w, int64_t ldw,
             int64_t rows, float* out, int64_t ldo) {
  Gemm<float, LoadF32>(x, ldx, n, k, w, ldw, rows, out, ldo);
}

void GemmF8(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Fp8Scales& scales, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* wr = w + r * ldw;
    const float* sr = scales.Row(r);
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * ldx;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = 0; i < k; ++i) {
        const float wv = F8E4M3ToFloat(wr[i]) * sr[(i + scales.col_offset) / scales.block_cols];
        acc[i % 8] += xt[i] * wv;
      }
      out[t * ldo + r] =
          ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
  }
}

void F8ToF32(const uint8_t* in, float scale, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = F8E4M3ToFloat(in[i]) * scale;
}

void Q4ToF32(const uint8_t* row, int64_t k, const Q4Groups& groups, int64_t r, float* out) {
  const int64_t base = groups.Row(r);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t g = base + groups.Group(i);
    const float zero = groups.zero_points == nullptr ? static_cast<float>(kQ4SymmetricZero)
                                                     : groups.zero_points[g];
    out[i] = (static_cast<float>(Q4Value(row, k, i)) - zero) * groups.scales[g];
  }
}

void GemmQ4(const float* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w, int64_t ldw,
            int64_t rows, const Q4Groups& groups, float* out, int64_t ldo) {
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    Q4ToF32(w + r * ldw, k, groups, r, row.data());
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * ldx;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = 0; i < k; ++i) acc[i % 8] += xt[i] * row[i];
      out[t * ldo + r] =
          ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
  }
}

void Bf16ToF32(const uint16_t* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
}
void F32ToBf16(const float* in, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(in[i]);
}
template <typename V, float (*Load)(V)>
void Pv(const float* p, int64_t ldp, int64_t rows, int64_t npos, const V* v, int64_t ldv,
        int64_t dv, float* acc, int64_t ldacc) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < npos; ++j) {
      const float pr = p[r * ldp + j];
      for (int64_t d = 0; d < dv; ++d) acc[r * ldacc + d] += pr * Load(v[j * ldv + d]);
    }
  }
}
void PvBf16(const float* p, int64_t ldp, int64_t rows, int64_t npos, const uint16_t* v, int64_t ldv,
            int64_t dv, float* acc, int64_t ldacc) {
  Pv<uint16_t, LoadBf16>(p, ldp, rows, npos, v, ldv, dv, acc, ldacc);
}
void PvF32(const float* p, int64_t ldp, int64_t rows, int64_t npos, const float* v, int64_t ldv,
           int64_t dv, float* acc, int64_t ldacc) {
  Pv<float, LoadF32>(p, ldp, rows, npos, v, ldv, dv, acc, ldacc);
}

}  // namespace

const KernelTable& ScalarKernels() {
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

const KernelTable& KernelsFor(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAmx:
      return AmxKernels();
    case CpuIsa::kAvx512Bf16:
      return Avx512Bf16Kernels();
    case CpuIsa::kAvx512:
      return Avx512Kernels();
    case CpuIsa::kAvx2:
      return Avx2Kernels();
    case CpuIsa::kScalar:
      break;
  }
  return ScalarKernels();
}

}  // namespace expertmesh::kernels::cpu
