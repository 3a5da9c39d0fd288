// The AVX512_BF16 family's fp8 kernel (gemm_f8_xbf16, kernels_avx512_bf16.cc): per run of rows
// that share a scale row, each token's activations times their column's block scale, rounded to
// bf16, multiply the e4m3 values as they are. Checked here:
//  - identity activations read back every e4m3 byte under every kind of scale: value x bf16(scale)
//    exactly (products below 2^-106 flushed, as the kernel says), and where x s would overflow
//    (a scale of 1e35, or activations too large for theirs) the block-folding fallback's
//    fp32(value x scale);
//  - with the default options, a token's output does not depend on its batch, for any token
//    count, in Linear over slices that start inside a scale block and in grouped Linear.
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

using kernels::cpu::CpuBackendOptions;
using kernels::cpu::CpuSupports;

#define SKIP_WITHOUT_AVX512_BF16()                                                           \
  if (!CpuSupports(CpuIsa::kAvx512Bf16)) {                                                   \
    GTEST_SKIP() << "this CPU lacks AVX512_BF16 (with BW and VBMI2): the avx512bf16 family " \
                    "and its fp8 kernel are unavailable here";                               \
  }

// The default AVX512_BF16 backend: nothing batch-invariant asked for.
std::unique_ptr<CpuBackend> DefaultBackend() {
  CpuBackendOptions options;
  options.num_threads = 2;
  options.isa = CpuIsa::kAvx512Bf16;
  options.copy_weights = false;
  auto backend = CpuBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// Every byte (but the NaN patterns) in a 160 x 320 weight that starts 64 rows and 64 columns into
// its block grid, under positive, negative, tiny and large scales; a scale row holding 1e35 (x s x
// 2^100 overflows) takes the fallback for all its rows.
TEST(Fp8ScaledActivations, EveryByteUnderEveryKindOfScale) {
  SKIP_WITHOUT_AVX512_BF16();
  auto backend = DefaultBackend();
  ASSERT_NE(backend, nullptr);
  const int64_t m = 160, k = 320, row_offset = 64, col_offset = 64;
  Tensor w = *Tensor::Empty(DType::kF8E4M3, {m, k});
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const auto byte = static_cast<uint8_t>((r * 37 + i) & 0xff);
      w.data<uint8_t>()[r * k + i] = (byte & 0x7f) == 0x7f ? 0 : byte;
    }
  }
  auto grid = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {2, 3}));
  // Scale row 0 (rows 0-63 here) overflows in its third block; row 1 has a scale so small that
  // some products fall below 2^-106.
  const float scales[] = {0.05f, -0.07f, 1e35f, 1e-37f, 3.5f, 0.0123f};
  std::copy(std::begin(scales), std::end(scales), grid->data<float>());
  w = *w.WithBlockScales({.scales = grid,
                          .block_rows = 128,
                          .block_cols = 128,
                          .row_offset = row_offset,
                          .col_offset = col_offset});
  Tensor x = *Tensor::Zeros(DType::kBF16, {k, k});
  for (int64_t i = 0; i < k; ++i) x.data<uint16_t>()[i * k + i] = FloatToBf16(1.0f);
  Tensor out = *Tensor::Empty(DType::kF32, {k, m});
  ASSERT_TRUE(backend->Linear(x, w, Tensor(), out).ok());
  int64_t mismatches = 0;
  for (int64_t r = 0; r < m; ++r) {
    const int64_t scale_row = (r + row_offset) / 128;
    for (int64_t i = 0; i < k; ++i) {
      const uint8_t byte = w.data<uint8_t>()[r * k + i];
      const float scale = scales[scale_row * 3 + (i + col_offset) / 128];
      const float value = (byte & 0x78) == 0 ? 0.0f : F8E4M3ToFloat(byte);  // subnormals: 0
      float expected = 0;
      if (scale_row == 0) {
        expected = value * scale;  // the fallback: exact, scaled once in fp32
      } else {
        expected = value * Bf16ToFloat(FloatToBf16(scale));  // exact: 4 x 8 significant bits
        if (std::fabs(expected) < 0x1p-106f) expected = 0;
      }
      const float got = out.data<float>()[i * m + r];
      if (got != expected && ++mismatches <= 10) {
        ADD_FAILURE() << "row " << r << ", column " << i << ", byte 0x" << std::hex << int{byte}
                      << std::dec << ", scale " << scale << ": " << got << ", expected "
                      << expected;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
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
