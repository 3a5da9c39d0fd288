// Shared pieces of the GEMM tests: seeded random tensors, the CPU reference with its error scale,
// and the comparison with the stated tolerances.
//
// Tolerance, per element, against the CPU backend's f32 result r (the same inputs, out f32):
//   |got - r| <= 1e-4 |r| + 2e-5 s  (+ 1 bf16 ulp of r for a bf16 output)
// where s = sum_k |x_k w_k| (+ |bias|), the CPU result on |x|, |W|, |bias|. The s term is the
// fp32 summation-order slack (two fp32 sums of K terms in different orders differ by a few
// 1e-7 s; tensor-core accumulation truncates, ~2e-6 s at K = 2048), so cancellation near zero
// cannot fail a correct kernel. A bf16 output is one rounding of the GPU's fp32 value, within
// half an ulp of it. NaN or Inf never passes (outputs are poisoned with NaN before each run, so
// an unwritten element fails too).
#ifndef EXPERTMESH_TESTS_KERNELS_CUDA_GEMM_GEMM_TEST_UTIL_H_
#define EXPERTMESH_TESTS_KERNELS_CUDA_GEMM_GEMM_TEST_UTIL_H_

#include <cmath>
#include <random>
#include <sstream>
#include <string>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/tensor.h"

namespace expertmesh::testing {

using kernels::Tensor;

inline std::string DTypeShort(DType d) {
  switch (d) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    default:
      return std::string(DTypeName(d));
  }
}

// Uniform values in [-1, 1), rounded to the dtype (f32 or bf16).
inline Tensor RandomTensor(DType dtype, std::initializer_list<int64_t> shape, std::mt19937& rng) {
  Tensor t = *Tensor::Empty(dtype, shape);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = dist(rng);
    if (dtype == DType::kF32) {
      t.data<float>()[i] = v;
    } else {
      t.data<uint16_t>()[i] = FloatToBf16(v);
    }
  }
  return t;
}

inline float ValueAt(const Tensor& t, int64_t i) {
  return t.dtype() == DType::kF32 ? t.data<float>()[i] : Bf16ToFloat(t.data<uint16_t>()[i]);
}

// x as f32 (exact for bf16). The CPU references of quantized weights run on f32 activations: with
// bf16 ones a CPU with AMX multiplies bf16-rounded weights on its tiles (bf16(q x s), 2^-9
// relative each: docs/fp8.md, docs/int4.md), which would make the reference, not the GPU, the
// rounded side; in fp32 every CPU kernel family multiplies the dequantized weight rounded once
// to f32.
inline Tensor WidenToF32(const Tensor& x) {
  if (x.dtype() == DType::kF32) return x;
  Tensor f = *Tensor::Empty(DType::kF32, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) f.data<float>()[i] = ValueAt(x, i);
  return f;
}

// |t|, same dtype (exact for f32 and bf16).
inline Tensor AbsTensor(const Tensor& t) {
  if (!t.defined()) return t;
  Tensor a = *Tensor::Empty(t.dtype(), t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::kF32) {
      a.data<float>()[i] = std::fabs(t.data<float>()[i]);
    } else {
      a.data<uint16_t>()[i] = t.data<uint16_t>()[i] & 0x7fffu;
    }
  }
  return a;
}

// One bf16 ulp at |v| (8 significant bits).
inline double Bf16Ulp(double v) {
  int e = 0;
  std::frexp(v, &e);  // |v| = f 2^e, f in [0.5, 1)
  return std::ldexp(1.0, e - 8);
}

// Compares `got` (f32 or bf16) with the f32 reference `ref` under the tolerance above; `rows`
// limits the comparison to a set of rows when not empty ([rows, cols] layout).
// `extra` adds extra * s to each bound (a kernel that rounds its operands, e.g. fp8 weights
// dequantized to bf16: 2^-9 s).
inline ::testing::AssertionResult GemmClose(const Tensor& got, const Tensor& ref,
                                            const Tensor& scale, const std::vector<bool>& rows = {},
                                            double extra = 0.0) {
  const int64_t numel = ref.numel();
  const int64_t cols = ref.rank() == 2 ? ref.dim(1) : numel;
  const bool bf16 = got.dtype() == DType::kBF16;
  int64_t bad = 0;
  double worst = 0.0;
  std::ostringstream first;
  for (int64_t i = 0; i < numel; ++i) {
    if (!rows.empty() && !rows[static_cast<size_t>(i / cols)]) continue;
    const double g = ValueAt(got, i);
    const double r = ref.data<float>()[i];
    const double s = scale.data<float>()[i];
    const double tol = 1e-4 * std::fabs(r) + (2e-5 + extra) * s + (bf16 ? Bf16Ulp(r) : 0.0) + 1e-30;
    const double err = std::fabs(g - r);
    if (!std::isfinite(g) || !(err <= tol)) {
      if (bad < 5) {
        first << "\n  [" << i / cols << ", " << i % cols << "] got " << g << " want " << r
              << " (tol " << tol << ", scale " << s << ")";
      }
      ++bad;
    } else if (err / tol > worst) {
      worst = err / tol;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "worst error/tolerance " << worst;
  return ::testing::AssertionFailure() << bad << " of " << numel << " elements off" << first.str();
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_KERNELS_CUDA_GEMM_GEMM_TEST_UTIL_H_
