// The AVX512_BF16 family's fp8 kernel (gemm_f8_xbf16, kernels_avx512_bf16.cc): per run of rows
// that share a scale row, each token's activations times their column's block scale, rounded to
// bf16, multiply the e4m3 values as they are. Checked here:
//  - identity activations read back every e4m3 byte under every kind of scale: value x bf16(scale)
//    exactly (products below 2^-106 flushed, as the kernel says), and where x s would overflow
//    (a scale of 1e35, or activations too large for theirs) the block-folding fallback's
//    fp32(value x scale);
//  - with the default options, a token's output does not depend on its batch, for any token
//    count, in Linear over slices that start inside a scale block and in grouped Linear, and a
//    row's does not depend on the rows beside it.
// The accuracy against the dequantized reference over random weights is fp8_gemm_test's.
// Skipped, with the reason, on CPUs without AVX512_BF16.
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

using kernels::cpu::CpuSupports;

#define SKIP_WITHOUT_AVX512_BF16()                                                           \
  if (!CpuSupports(CpuIsa::kAvx512Bf16)) {                                                   \
    GTEST_SKIP() << "this CPU lacks AVX512_BF16 (with BW and VBMI2): the avx512bf16 family " \
                    "and its fp8 kernel are unavailable here";                               \
  }

std::unique_ptr<CpuBackend> DefaultBackend() { return MakeDefaultBackend(CpuIsa::kAvx512Bf16); }

// Every byte (but the NaN patterns) under positive, negative, tiny and large scales. Scale row 0
// (the sweep's rows 0-63) holds 1e35, for which x s x 2^100 overflows: all its rows take the
// fallback, exact in fp32. Row 1 has a scale so small that some products fall below 2^-106.
TEST(Fp8ScaledActivations, EveryByteUnderEveryKindOfScale) {
  SKIP_WITHOUT_AVX512_BF16();
  auto backend = DefaultBackend();
  ASSERT_NE(backend, nullptr);
  const Fp8ByteSweep sweep = EveryFp8Byte({0.05f, -0.07f, 1e35f, 1e-37f, 3.5f, 0.0123f});
  ExpectSweepReadsBack(*backend, sweep, [&](int64_t r, int64_t i) {
    const uint8_t byte = sweep.Byte(r, i);
    const float value = (byte & 0x78) == 0 ? 0.0f : F8E4M3ToFloat(byte);  // subnormals: 0
    const float scale = sweep.Scale(r, i);
    if ((r + sweep.row_offset) / 128 == 0) return value * scale;    // the fallback
    const float product = value * Bf16ToFloat(FloatToBf16(scale));  // exact: 4 x 8 bits
    return std::fabs(product) < 0x1p-106f ? 0.0f : product;
  });
}

// Scales near 2^25 with activations up to 64: x s x 2^100 overflows for the larger activations,
// which the kernel finds while scaling them, and those runs take the exact block-folding fallback:
// finite outputs at fp32's accuracy.
TEST(Fp8ScaledActivations, ActivationsThatWouldOverflowTakeTheFallback) {
  SKIP_WITHOUT_AVX512_BF16();
  auto backend = DefaultBackend();
  ASSERT_NE(backend, nullptr);
  std::mt19937 rng(43);
  const int64_t n = 5, k = 300, m = 140;
  const float scale_hi = 0x1p26f, x_hi = 64.0f;
  const Tensor w = Fp8BlockWeight(m, k, 5, 77, rng, 0x1p25f, scale_hi);
  const Tensor x = RandomTensor(DType::kBF16, {n, k}, rng, -x_hi, x_hi);
  const kernels::BlockScales& b = *w.block_scales();
  std::vector<double> dequantized(static_cast<size_t>(m * k));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const float scale = b.scales->data<float>()[((r + b.row_offset) / 128) * b.scales->dim(1) +
                                                  (i + b.col_offset) / 128];
      dequantized[r * k + i] = F8E4M3ToFloat(w.data<uint8_t>()[r * k + i]) * scale;
    }
  }
  Tensor out = *Tensor::Empty(DType::kF32, {n, m});
  ASSERT_TRUE(backend->Linear(x, w, Tensor(), out).ok());
  const double atol = 2e-6 * 4 * scale_hi * x_hi * std::sqrt(double(k));
  EXPECT_TRUE(
      TensorsClose(out, LinearReference(x, dequantized, m), ToleranceFor(DType::kF32, atol)));
}

// Token counts on both sides of every grouping the kernel makes (one token group of up to 6,
// several, more than a block of 64 scaled tokens), rows that cut strips and scale rows, k with
// a partial scale block and a scalar tail (k % 32 != 0), column offsets.
TEST(Fp8ScaledActivations, ATokensOutputDoesNotDependOnItsBatch) {
  SKIP_WITHOUT_AVX512_BF16();
  auto backend = DefaultBackend();
  ASSERT_NE(backend, nullptr);
  std::mt19937 rng(41);
  struct Shape {
    int64_t m, k, row_offset, col_offset;
  };
  for (const Shape& s : {Shape{37, 300, 5, 77}, Shape{131, 2050, 96, 0}, Shape{9, 64, 0, 64}}) {
    const Tensor w = Fp8BlockWeight(s.m, s.k, s.row_offset, s.col_offset, rng);
    const Tensor x = RandomTensor(DType::kBF16, {100, s.k}, rng, -4.0f, 4.0f);
    for (const int64_t n : {2, 5, 7, 12, 33, 64, 65, 100}) {
      Tensor all = *Tensor::Empty(DType::kF32, {n, s.m});
      ASSERT_TRUE(backend->Linear(*x.Slice(0, n), w, Tensor(), all).ok());
      for (int64_t t = 0; t < n; t += std::max<int64_t>(1, n / 7)) {
        Tensor one = *Tensor::Empty(DType::kF32, {1, s.m});
        ASSERT_TRUE(backend->Linear(*x.Slice(t, t + 1), w, Tensor(), one).ok());
        EXPECT_TRUE(TensorsEqual(one, *all.Slice(t, t + 1)))
            << "m " << s.m << ", k " << s.k << ": token " << t << " of " << n;
      }
    }
  }
}

// A row summed in a strip of 4 (four lane sums at a time) and the same row alone (a one-row slice,
// its scales moved with it): the same bits, for token groups of every size.
TEST(Fp8ScaledActivations, ARowInAStripEqualsTheRowAlone) {
  SKIP_WITHOUT_AVX512_BF16();
  auto backend = DefaultBackend();
  ASSERT_NE(backend, nullptr);
  std::mt19937 rng(47);
  const int64_t k = 300;
  const Tensor w = Fp8BlockWeight(10, k, 125, 77, rng);
  for (const int64_t n : {1, 5, 8, 13}) {
    const Tensor x = RandomTensor(DType::kBF16, {n, k}, rng, -4.0f, 4.0f);
    EXPECT_TRUE(RowsEqualRowsAlone(*backend, x, w));
  }
}

// Experts with 1, 6, 13 and 70 tokens: each token's rows are those of the token alone.
TEST(Fp8ScaledActivations, GroupedLinearTokensDoNotDependOnTheirExpertsBatch) {
  SKIP_WITHOUT_AVX512_BF16();
  auto backend = DefaultBackend();
  ASSERT_NE(backend, nullptr);
  std::mt19937 rng(42);
  const int64_t k = 384, m = 200;
  const std::vector<int32_t> offsets = {0, 1, 7, 20, 90};
  std::vector<Tensor> weights;
  for (int e = 0; e < 4; ++e) weights.push_back(Fp8BlockWeight(m, k, 64 * e, 0, rng));
  const Tensor x = RandomTensor(DType::kBF16, {offsets.back(), k}, rng);
  Tensor out = *Tensor::Empty(DType::kF32, {offsets.back(), m});
  ASSERT_TRUE(backend->MoeGroupedLinear(x, I32Tensor(offsets, {5}), weights, out).ok());
  for (int e = 0; e < 4; ++e) {
    for (int64_t t = offsets[e]; t < offsets[e + 1]; t += 3) {
      Tensor one = *Tensor::Empty(DType::kF32, {1, m});
      ASSERT_TRUE(backend->Linear(*x.Slice(t, t + 1), weights[e], Tensor(), one).ok());
      EXPECT_TRUE(TensorsEqual(one, *out.Slice(t, t + 1))) << "expert " << e << ", token " << t;
    }
  }
}

}  // namespace
}  // namespace expertmesh::testing
