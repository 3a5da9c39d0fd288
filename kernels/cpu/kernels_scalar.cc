// Portable inner loops: the reference path every machine runs and tests force.
#include "common/dtype.h"
#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {
namespace {

// Eight partial sums, like an 8-lane vector, so the scalar path rounds like the AVX2 path would
// for most inputs and the compiler can vectorise it.
template <typename W, float (*Load)(W)>
void Gemm(const float* x, int64_t n, int64_t k, const W* w, int64_t rows, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const W* wr = w + r * k;
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * k;
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

void GemmBf16(const float* x, int64_t n, int64_t k, const uint16_t* w, int64_t rows, float* out,
              int64_t ldo) {
  Gemm<uint16_t, LoadBf16>(x, n, k, w, rows, out, ldo);
}
void GemmF32(const float* x, int64_t n, int64_t k, const float* w, int64_t rows, float* out,
             int64_t ldo) {
  Gemm<float, LoadF32>(x, n, k, w, rows, out, ldo);
}

void Bf16ToF32(const uint16_t* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
}
void F32ToBf16(const float* in, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(in[i]);
}
float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}
void Axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

const KernelTable& ScalarKernels() {
  static const KernelTable table{GemmBf16, GemmF32, Bf16ToF32, F32ToBf16, Dot, Axpy};
  return table;
}

const KernelTable& KernelsFor(CpuIsa isa) {
  return isa == CpuIsa::kAvx2 ? Avx2Kernels() : ScalarKernels();
}

}  // namespace expertmesh::kernels::cpu
