// The AVX512_BF16 family's widened path for q4 weights (cpu_linear.cc; widen_q4_bf16): from
// q4_widen_min_tokens tokens per weight on, a product multiplies its weights rounded to bf16 with
// the bf16 kernel. Checked bit for bit:
//  - identity activations read the widened values back: every q4 value under symmetric and
//    asymmetric groups;
//  - any product equals the same product of a bf16 weight holding those values, on a
//    batch-invariant backend (whose bf16 kernel gives a token the same bits whatever the token
//    count, the row chunks and the token blocks): Linear over shapes that cut chunks and token
//    blocks, and grouped Linear with experts on both sides of the threshold (those below it get
//    the exact kernel's bits).
// Skipped, with the reason, on CPUs without AVX512_BF16.
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/q4_layout.h"
#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

using kernels::cpu::CpuBackendOptions;
using kernels::cpu::CpuSupports;
using kernels::cpu::kDefaultQ4WidenMinTokens;

#define SKIP_WITHOUT_AVX512_BF16()                                                    \
  if (!CpuSupports(CpuIsa::kAvx512Bf16)) {                                            \
    GTEST_SKIP() << "this CPU lacks AVX512_BF16 (with BW and VBMI2): the avx512bf16 " \
                    "family and its widening are unavailable here";                   \
  }

std::unique_ptr<CpuBackend> MakeBackend(bool batch_invariant) {
  CpuBackendOptions options;
  options.num_threads = 2;
  options.isa = CpuIsa::kAvx512Bf16;
  options.batch_invariant = batch_invariant;
  options.copy_weights = false;
  auto backend = CpuBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// A q4 weight [rows, cols] of random values in groups of `group` along each row (one scale row
// per weight row), symmetric or with random zero points.
Tensor Q4GroupWeight(int64_t rows, int64_t cols, int64_t group, bool zero_points,
                     std::mt19937& rng) {
  std::uniform_int_distribution<int> nibble(0, 15);
  std::vector<uint8_t> values(static_cast<size_t>(cols));
  Tensor w = *Tensor::Empty(DType::kQ4, {rows, cols});
  for (int64_t r = 0; r < rows; ++r) {
    for (uint8_t& v : values) v = static_cast<uint8_t>(nibble(rng));
    kernels::PackQ4Row(values.data(), cols, w.data<uint8_t>() + r * cols / 2);
  }
  const int64_t groups = (cols + group - 1) / group;
  auto scales = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {rows, groups}));
  std::uniform_real_distribution<float> scale(0.01f, 0.05f);
  for (int64_t i = 0; i < scales->numel(); ++i) scales->data<float>()[i] = scale(rng);
  kernels::BlockScales b{.scales = scales, .block_rows = 1, .block_cols = group};
  if (zero_points) {
    b.zero_points = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {rows, groups}));
    for (int64_t i = 0; i < groups * rows; ++i) {
      b.zero_points->data<float>()[i] = static_cast<float>(nibble(rng));
    }
  }
  return *w.WithBlockScales(std::move(b));
}

// What widen_q4_bf16 makes of a q4 weight: bf16((q - zero) * scale), nearest even.
Tensor Q4AsBf16Weight(const Tensor& w) {
  const kernels::BlockScales& s = *w.block_scales();
  const int64_t rows = w.dim(0), cols = w.dim(1), ld = s.scales->dim(1);
  Tensor out = *Tensor::Empty(DType::kBF16, {rows, cols});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) {
      const int64_t g = r * ld + i / s.block_cols;
      const float zero = s.zero_points == nullptr ? 8.0f : s.zero_points->data<float>()[g];
      const float q = kernels::Q4Value(w.data<uint8_t>() + r * cols / 2, cols, i);
      out.data<uint16_t>()[r * cols + i] = FloatToBf16((q - zero) * s.scales->data<float>()[g]);
    }
  }
  return out;
}

// bf16 identity activations [k, k]: output [k, rows] is the weights the product multiplied.
Tensor Identity(int64_t k) {
  Tensor x = *Tensor::Zeros(DType::kBF16, {k, k});
  for (int64_t i = 0; i < k; ++i) x.data<uint16_t>()[i * k + i] = FloatToBf16(1.0f);
  return x;
}

// Every q4 value of every group, symmetric (zero 8) and asymmetric, with groups of 32 and 128 and
// a last unit 32 wide (k = 160), comes out as bf16((q - zero) * scale).
TEST(WidenedQ4, EveryValueOfEveryGroupIsExact) {
  SKIP_WITHOUT_AVX512_BF16();
  auto backend = MakeBackend(/*batch_invariant=*/false);
  ASSERT_NE(backend, nullptr);
  std::mt19937 rng(12);
  for (const auto& [group, zero_points] :
       std::vector<std::pair<int64_t, bool>>{{32, false}, {128, true}, {32, true}}) {
    const int64_t m = 37, k = 160;
    const Tensor w = Q4GroupWeight(m, k, group, zero_points, rng);
    Tensor out = *Tensor::Empty(DType::kF32, {k, m});
    ASSERT_TRUE(backend->Linear(Identity(k), w, Tensor(), out).ok());
    const Tensor want = Q4AsBf16Weight(w);
    int64_t mismatches = 0;
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t i = 0; i < k; ++i) {
        const float expected = Bf16ToFloat(want.data<uint16_t>()[r * k + i]);
        if (out.data<float>()[i * m + r] != expected && ++mismatches <= 5) {
          ADD_FAILURE() << "group " << group << (zero_points ? " asymmetric" : " symmetric")
                        << ", row " << r << ", column " << i << ": " << out.data<float>()[i * m + r]
                        << ", expected " << expected;
        }
      }
    }
    EXPECT_EQ(mismatches, 0) << "group " << group;
  }
}

// A default AVX512_BF16 backend (widening from the default thresholds) and a batch-invariant one
// (never widening).
class WidenedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_AVX512_BF16();
    fast_ = MakeBackend(/*batch_invariant=*/false);
    invariant_ = MakeBackend(/*batch_invariant=*/true);
    ASSERT_NE(fast_, nullptr);
    ASSERT_NE(invariant_, nullptr);
  }
  std::unique_ptr<CpuBackend> fast_, invariant_;
};

// One product on the default backend against the bf16 weight `widened` on a batch-invariant one.
void ExpectSameBitsAsBf16(CpuBackend& fast, CpuBackend& invariant, const Tensor& x, const Tensor& w,
                          const Tensor& widened, const std::string& what) {
  const int64_t n = x.dim(0), m = w.dim(0);
  Tensor got = *Tensor::Empty(DType::kF32, {n, m});
  Tensor want = *Tensor::Empty(DType::kF32, {n, m});
  ASSERT_TRUE(fast.Linear(x, w, Tensor(), got).ok()) << what;
  ASSERT_TRUE(invariant.Linear(x, widened, Tensor(), want).ok()) << what;
  EXPECT_TRUE(TensorsEqual(got, want)) << what << ", n = " << n;
}

// Token counts at the threshold and past a token block (96), row counts that cut the widened
// chunks (32 rows at k <= 4096).
TEST_F(WidenedTest, LinearHasTheBf16KernelsBitsOnTheWidenedWeights) {
  std::mt19937 rng(31);
  struct Shape {
    int64_t n, k, m;
  };
  for (const Shape& s :
       {Shape{kDefaultQ4WidenMinTokens, 320, 37}, Shape{100, 256, 70}, Shape{9, 2080, 11}}) {
    const Tensor w = Q4GroupWeight(s.m, s.k, 32, s.n == 100, rng);
    const Tensor x = RandomTensor(DType::kBF16, {s.n, s.k}, rng);
    ExpectSameBitsAsBf16(*fast_, *invariant_, x, w, Q4AsBf16Weight(w), "q4");
  }
}

// Below the threshold nothing changes: the exact kernel's bits, as a batch-invariant backend
// gives them.
TEST_F(WidenedTest, LinearBelowTheThresholdHasTheExactKernelsBits) {
  std::mt19937 rng(32);
  const Tensor weights[] = {Q4GroupWeight(40, 320, 128, true, rng),
                            Q4GroupWeight(40, 320, 32, false, rng)};
  for (const Tensor& w : weights) {
    for (int64_t n = 1; n < kDefaultQ4WidenMinTokens; ++n) {
      const Tensor x = RandomTensor(DType::kBF16, {n, w.dim(1)}, rng);
      Tensor got = *Tensor::Empty(DType::kF32, {n, w.dim(0)});
      Tensor want = *Tensor::Empty(DType::kF32, {n, w.dim(0)});
      ASSERT_TRUE(fast_->Linear(x, w, Tensor(), got).ok());
      ASSERT_TRUE(invariant_->Linear(x, w, Tensor(), want).ok());
      EXPECT_TRUE(TensorsEqual(got, want)) << DTypeName(w.dtype()) << ", n = " << n;
    }
  }
}

// A grouped linear whose experts see 0, 2, the threshold and 40 tokens: each expert's rows are
// its own product's bits, widened or exact by its own count.
TEST_F(WidenedTest, GroupedLinearTakesEachExpertByItsOwnTokenCount) {
  std::mt19937 rng(33);
  const int64_t k = 256, m = 48, threshold = kDefaultQ4WidenMinTokens;
  const std::vector<int32_t> offsets = {0, 0, 2, static_cast<int32_t>(2 + threshold),
                                        static_cast<int32_t>(42 + threshold)};
  std::vector<Tensor> weights;
  for (int e = 0; e < 4; ++e) weights.push_back(Q4GroupWeight(m, k, 128, e % 2 == 1, rng));
  const Tensor x = RandomTensor(DType::kBF16, {offsets.back(), k}, rng);
  Tensor out = *Tensor::Empty(DType::kF32, {offsets.back(), m});
  ASSERT_TRUE(fast_->MoeGroupedLinear(x, I32Tensor(offsets, {5}), weights, out).ok());
  for (int e = 1; e < 4; ++e) {
    const int64_t r0 = offsets[e], r1 = offsets[e + 1];
    const Tensor xe = *x.Slice(r0, r1);
    const bool widened = r1 - r0 >= threshold;
    const Tensor reference = widened ? Q4AsBf16Weight(weights[e]) : weights[e];
    Tensor want = *Tensor::Empty(DType::kF32, {r1 - r0, m});
    ASSERT_TRUE(invariant_->Linear(xe, reference, Tensor(), want).ok());
    EXPECT_TRUE(TensorsEqual(*out.Slice(r0, r1), want))
        << "expert " << e << " (" << r1 - r0 << " tokens, " << (widened ? "widened" : "exact")
        << ")";
  }
}

}  // namespace
}  // namespace expertmesh::testing
