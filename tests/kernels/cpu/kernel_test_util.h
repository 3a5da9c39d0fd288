// Shared pieces of the CPU kernel tests: a backend per ISA (scalar and AVX2 both run every
// case; AVX2 cases skip visibly on a CPU without it), seeded random tensors, doubles.
#ifndef EXPERTMESH_TESTS_KERNELS_CPU_KERNEL_TEST_UTIL_H_
#define EXPERTMESH_TESTS_KERNELS_CPU_KERNEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/util/tensor_compare.h"

namespace expertmesh::testing {

using kernels::Tensor;
using kernels::cpu::CpuBackend;
using kernels::cpu::CpuIsa;

inline std::vector<CpuIsa> AllCpuIsas() {
  return {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16, CpuIsa::kAmx};
}

inline std::string DTypeShort(DType d) {
  std::string s(DTypeName(d));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Fixture for TEST_P over (Case, CpuIsa); Case must have a `std::string name`.
template <typename Case>
class CpuOpTest : public ::testing::TestWithParam<std::tuple<Case, CpuIsa>> {
 protected:
  void SetUp() override {
    const CpuIsa isa = std::get<1>(this->GetParam());
    if (!kernels::cpu::CpuSupports(isa)) {
      GTEST_SKIP() << "this CPU lacks " << kernels::cpu::CpuIsaName(isa);
    }
    kernels::cpu::CpuBackendOptions options;
    options.num_threads = 2;
    options.isa = isa;
    options.blas_min_tokens = BlasMinTokens();
    options.batch_invariant = BatchInvariant();
    auto backend = CpuBackend::Create(options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }
  virtual int64_t BlasMinTokens() const { return 64; }
  // Tests that compare a token alone with the same token in a batch need every token count on
  // one kernel (the AMX family's default threshold puts 1-3 tokens on another).
  virtual bool BatchInvariant() const { return false; }
  const Case& c() const { return std::get<0>(this->GetParam()); }

  std::unique_ptr<CpuBackend> backend_;
};

template <typename Case>
std::string CaseName(const ::testing::TestParamInfo<std::tuple<Case, CpuIsa>>& info) {
  return std::get<0>(info.param).name + "_" +
         std::string(kernels::cpu::CpuIsaName(std::get<1>(info.param)));
}

// A tensor of uniform values in [lo, hi), rounded to its dtype.
inline Tensor RandomTensor(DType dtype, std::initializer_list<int64_t> shape, std::mt19937& rng,
                           float lo = -1.0f, float hi = 1.0f) {
  Tensor t = *Tensor::Empty(dtype, shape);
  std::uniform_real_distribution<float> dist(lo, hi);
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

inline Tensor I32Tensor(const std::vector<int32_t>& values, std::initializer_list<int64_t> shape) {
  Tensor t = *Tensor::Empty(DType::kI32, shape);
  std::copy(values.begin(), values.end(), t.data<int32_t>());
  return t;
}

// Whether every row of Linear(x, w) (fp32 out) has the bits of the same row computed alone, as
// Linear(x, w.Slice(r, r + 1)): a row summed in a strip of 4 and summed by itself must agree.
inline ::testing::AssertionResult RowsEqualRowsAlone(kernels::Backend& backend, const Tensor& x,
                                                     const Tensor& w) {
  const int64_t n = x.dim(0), m = w.dim(0);
  Tensor all = *Tensor::Empty(DType::kF32, {n, m});
  if (absl::Status s = backend.Linear(x, w, Tensor(), all); !s.ok()) {
    return ::testing::AssertionFailure() << s;
  }
  for (int64_t r = 0; r < m; ++r) {
    Tensor one = *Tensor::Empty(DType::kF32, {n, 1});
    if (absl::Status s = backend.Linear(x, *w.Slice(r, r + 1), Tensor(), one); !s.ok()) {
      return ::testing::AssertionFailure() << "row " << r << ": " << s;
    }
    for (int64_t t = 0; t < n; ++t) {
      const float alone = one.data<float>()[t], in_strip = all.data<float>()[t * m + r];
      if (std::memcmp(&alone, &in_strip, sizeof(float)) != 0) {
        return ::testing::AssertionFailure()
               << "row " << r << ", token " << t << " of " << n << ": " << alone << " alone, "
               << in_strip << " beside the other rows";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// x [n, k] times w^T in doubles, w given as out_rows x k doubles (a dequantized weight): the
// reference of the quantized-weight Linear tests.
inline std::vector<double> LinearReference(const Tensor& x, const std::vector<double>& w,
                                           int64_t out_rows) {
  const std::vector<double> xd = ToDoubles(x);
  const int64_t n = x.dim(0), k = x.dim(1);
  std::vector<double> ref(static_cast<size_t>(n * out_rows));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < out_rows; ++o) {
      double s = 0;
      for (int64_t i = 0; i < k; ++i) s += xd[t * k + i] * w[o * k + i];
      ref[t * out_rows + o] = s;
    }
  }
  return ref;
}

// fp8 e4m3 weights [m, k] with a 128 x 128 scale grid, cut at (row_offset, col_offset) of their
// checkpoint tensor. Normal e4m3 values of magnitude below 4 (exponent field 1..8): the
// AVX512_BF16 and AMX paths read e4m3 subnormals as zero (kernel_table.h), and checkpoints hold
// about 1 in 10^4 of them.
inline Tensor Fp8BlockWeight(int64_t m, int64_t k, int64_t row_offset, int64_t col_offset,
                             std::mt19937& rng, float scale_lo = 0.02f, float scale_hi = 0.1f) {
  Tensor w = *Tensor::Empty(DType::kF8E4M3, {m, k});
  std::uniform_int_distribution<int> exponent(1, 8), mantissa(0, 7), sign(0, 1);
  for (int64_t i = 0; i < w.numel(); ++i) {
    w.data<uint8_t>()[i] =
        static_cast<uint8_t>((sign(rng) << 7) | (exponent(rng) << 3) | mantissa(rng));
  }
  auto grid = std::make_shared<Tensor>(
      *Tensor::Empty(DType::kF32, {(row_offset + m + 127) / 128, (col_offset + k + 127) / 128}));
  std::uniform_real_distribution<float> scale(scale_lo, scale_hi);
  for (int64_t i = 0; i < grid->numel(); ++i) grid->data<float>()[i] = scale(rng);
  return *w.WithBlockScales({.scales = grid,
                             .block_rows = 128,
                             .block_cols = 128,
                             .row_offset = row_offset,
                             .col_offset = col_offset});
}

// The bf16 weights the AMX tiles (amx_gemm_f8) multiply for an fp8 weight with normal values:
// each its e4m3 value times its block scale, rounded to fp32 and then to bf16.
inline Tensor Fp8AsBf16Weight(const Tensor& w) {
  const kernels::BlockScales& s = *w.block_scales();
  const int64_t rows = w.dim(0), cols = w.dim(1), ld = s.scales->dim(1);
  Tensor out = *Tensor::Empty(DType::kBF16, {rows, cols});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) {
      const float scale = s.scales->data<float>()[((r + s.row_offset) / s.block_rows) * ld +
                                                  (i + s.col_offset) / s.block_cols];
      out.data<uint16_t>()[r * cols + i] =
          FloatToBf16(F8E4M3ToFloat(w.data<uint8_t>()[r * cols + i]) * scale);
    }
  }
  return out;
}

// A backend of `isa` with its default options but 2 threads, reading weights in place; nullptr
// (and a test failure) where it cannot be made.
inline std::unique_ptr<CpuBackend> MakeDefaultBackend(CpuIsa isa) {
  kernels::cpu::CpuBackendOptions options;
  options.num_threads = 2;
  options.isa = isa;
  options.copy_weights = false;
  auto backend = CpuBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// Every e4m3 byte but the two NaN patterns, spread over an m x k fp8 weight that starts
// (row_offset, col_offset) into its 128 x 128 block grid (column blocks of 64 and 128 values, rows
// straddling a scale-row boundary), with the 2 x 3 grid `scales` (row-major); and the bf16
// identity activations [k, k] that read a product's weights back exactly through Linear (each
// output is one product with 1.0 plus exact zeros): out[i * m + r] is weight (r, i) as multiplied.
struct Fp8ByteSweep {
  static constexpr int64_t m = 160, k = 320, row_offset = 64, col_offset = 64;
  Tensor w, identity;
  float scales[6];
  float Scale(int64_t r, int64_t i) const {
    return scales[((r + row_offset) / 128) * 3 + (i + col_offset) / 128];
  }
  uint8_t Byte(int64_t r, int64_t i) const { return w.data<uint8_t>()[r * k + i]; }
};

inline Fp8ByteSweep EveryFp8Byte(const float (&scales)[6]) {
  Fp8ByteSweep s;
  std::copy(std::begin(scales), std::end(scales), s.scales);
  Tensor w = *Tensor::Empty(DType::kF8E4M3, {s.m, s.k});
  for (int64_t r = 0; r < s.m; ++r) {
    for (int64_t i = 0; i < s.k; ++i) {
      const auto byte = static_cast<uint8_t>((r * 37 + i) & 0xff);
      w.data<uint8_t>()[r * s.k + i] = (byte & 0x7f) == 0x7f ? 0 : byte;
    }
  }
  auto grid = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {2, 3}));
  std::copy(std::begin(scales), std::end(scales), grid->data<float>());
  s.w = *w.WithBlockScales({.scales = grid,
                            .block_rows = 128,
                            .block_cols = 128,
                            .row_offset = s.row_offset,
                            .col_offset = s.col_offset});
  s.identity = *Tensor::Zeros(DType::kBF16, {s.k, s.k});
  for (int64_t i = 0; i < s.k; ++i) s.identity.data<uint16_t>()[i * s.k + i] = FloatToBf16(1.0f);
  return s;
}

// Reads every weight of `sweep` back through `backend` and compares it with expected(r, i),
// naming the first mismatches.
template <typename Expected>
void ExpectSweepReadsBack(CpuBackend& backend, const Fp8ByteSweep& sweep,
                          const Expected& expected) {
  const int64_t m = sweep.m, k = sweep.k;
  Tensor out = *Tensor::Empty(DType::kF32, {k, m});
  ASSERT_TRUE(backend.Linear(sweep.identity, sweep.w, Tensor(), out).ok());
  int64_t mismatches = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const float want = expected(r, i), got = out.data<float>()[i * m + r];
      if (got != want && ++mismatches <= 10) {
        ADD_FAILURE() << "row " << r << ", column " << i << ", byte 0x" << std::hex
                      << int{sweep.Byte(r, i)} << std::dec << ", scale " << sweep.Scale(r, i)
                      << ": " << got << ", expected " << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// Through `backend`, every e4m3 byte under scales that are ordinary, negative, too large to fold
// with 2^120 (two-step widening) and small enough that products fall below fp32's normal range
// (flushed to zero), must come out as bf16(fp32(value x scale)) with e4m3 subnormals as zero: what
// the AMX tiles multiply.
inline void ExpectEveryFp8ByteWidenedToBf16(CpuBackend& backend) {
  const Fp8ByteSweep sweep = EveryFp8Byte({0.05f, -0.07f, 1e35f, 1e-37f, 3.5f, 0.0123f});
  ExpectSweepReadsBack(backend, sweep, [&](int64_t r, int64_t i) {
    const uint8_t byte = sweep.Byte(r, i);
    const float product = (byte & 0x78) == 0 ? 0.0f : F8E4M3ToFloat(byte) * sweep.Scale(r, i);
    return std::fpclassify(product) == FP_SUBNORMAL ? 0.0f : Bf16ToFloat(FloatToBf16(product));
  });
}

// The rounding a stored output of `dtype` has: the tolerance floor for comparisons.
inline Tolerance ToleranceFor(DType dtype, double fp32_tol = 1e-5) {
  if (dtype == DType::kBF16) return {.atol = 1e-2, .rtol = 1e-2, .min_cosine = 0.9999};
  return {.atol = fp32_tol, .rtol = fp32_tol, .min_cosine = 0.999999};
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_KERNELS_CPU_KERNEL_TEST_UTIL_H_
