// Linear against a double-precision reference, over the streaming (decode) and the BLAS
// (prefill) paths, odd sizes, bf16/f32 weights and activations, with and without bias.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

struct GemmCase {
  std::string name;
  int64_t n, in, out;
  DType x_dtype, w_dtype, out_dtype;
  bool bias;
};

class GemmTest : public CpuOpTest<GemmCase> {};

TEST_P(GemmTest, MatchesDoubleReference) {
  std::mt19937 rng(1234 + c().n * 7 + c().in);
  Tensor x = RandomTensor(c().x_dtype, {c().n, c().in}, rng);
  Tensor w = RandomTensor(c().w_dtype, {c().out, c().in}, rng, -0.5f, 0.5f);
  Tensor b = c().bias ? RandomTensor(c().w_dtype, {c().out}, rng) : Tensor();
  GuardedTensor out(c().out_dtype, {c().n, c().out});
  ASSERT_TRUE(backend_->Linear(x, w, b, out.tensor()).ok());
  EXPECT_TRUE(out.GuardsIntact());

  const std::vector<double> xd = ToDoubles(x), wd = ToDoubles(w);
  const std::vector<double> bd = c().bias ? ToDoubles(b) : std::vector<double>();
  std::vector<double> ref(c().n * c().out);
  for (int64_t t = 0; t < c().n; ++t) {
    for (int64_t o = 0; o < c().out; ++o) {
      double s = c().bias ? bd[o] : 0.0;
      for (int64_t i = 0; i < c().in; ++i) s += xd[t * c().in + i] * wd[o * c().in + i];
      ref[t * c().out + o] = s;
    }
  }
  // fp32 accumulation over `in` terms of size <= 0.5: error grows like sqrt(in) * eps.
  Tolerance tol = ToleranceFor(c().out_dtype, 2e-6 * std::sqrt(static_cast<double>(c().in)));
  EXPECT_TRUE(TensorsClose(out.tensor(), ref, tol));
}

// Batch invariance on the streaming path: a token's output does not depend on its neighbours
// (token groups of 3, 2 and 1 use different micro-kernels with the same summation order).
class GemmBatchInvarianceTest : public CpuOpTest<GemmCase> {
 protected:
  bool BatchInvariant() const override { return true; }
};

TEST_P(GemmBatchInvarianceTest, LastTokenAloneEqualsInBatch) {
  std::mt19937 rng(99);
  Tensor x = RandomTensor(c().x_dtype, {c().n, c().in}, rng);
  Tensor w = RandomTensor(c().w_dtype, {c().out, c().in}, rng);
  Tensor all = *Tensor::Empty(c().out_dtype, {c().n, c().out});
  ASSERT_TRUE(backend_->Linear(x, w, Tensor(), all).ok());
  for (int64_t t = 0; t < c().n; ++t) {
    Tensor one = *Tensor::Empty(c().out_dtype, {1, c().out});
    ASSERT_TRUE(backend_->Linear(*x.Slice(t, t + 1), w, Tensor(), one).ok());
    EXPECT_TRUE(TensorsEqual(one, *all.Slice(t, t + 1))) << "token " << t;
  }
}

// A row's output does not depend on whether it was summed in a strip of 4 rows (whose lane sums
// go four at a time where the family can) or alone: the same bits, for every token group size.
TEST_P(GemmBatchInvarianceTest, RowInStripEqualsRowAlone) {
  std::mt19937 rng(7);
  Tensor x = RandomTensor(c().x_dtype, {c().n, c().in}, rng);
  Tensor w = RandomTensor(c().w_dtype, {c().out, c().in}, rng);
  EXPECT_TRUE(RowsEqualRowsAlone(*backend_, x, w));
}

const GemmCase kBatchCases[] = {
    {"tokens5", 5, 100, 21, DType::kF32, DType::kBF16, DType::kF32, false},
    {"tokens32_bf16", 32, 64, 12, DType::kBF16, DType::kBF16, DType::kBF16, false},
    // Prefill-sized: from blas_min_tokens (64) on, the families that widen bf16 activations to
    // fp32 would hand the product to OpenBLAS, whose sums depend on the token count; a
    // batch-invariant backend keeps them on the streaming kernel.
    {"prefill130_bf16", 130, 1100, 70, DType::kBF16, DType::kBF16, DType::kBF16, false},
    {"prefill64_f32", 64, 2048, 8, DType::kF32, DType::kBF16, DType::kF32, false},
};

INSTANTIATE_TEST_SUITE_P(Cpu, GemmBatchInvarianceTest,
                         ::testing::Combine(::testing::ValuesIn(kBatchCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<GemmCase>);

// Awkward token counts (every way the token groups split: 1..9, and around 32) over a weight of
// 7 whole 4-row strips and 2 rows more, with k = 300 (a scalar tail after the vector steps and a
// part line at each row's end): how the strips ahead are prefetched depends on the number of
// groups, what is summed must not.
std::vector<GemmCase> AwkwardTokenCases(DType x_dtype, DType out_dtype) {
  std::vector<GemmCase> cases;
  for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 32, 33}) {
    cases.push_back({"awkward" + std::to_string(n) + "_" + DTypeShort(x_dtype), n, 300, 30, x_dtype,
                     DType::kBF16, out_dtype, false});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(CpuAwkwardTokens, GemmBatchInvarianceTest,
                         ::testing::Combine(::testing::ValuesIn(AwkwardTokenCases(DType::kF32,
                                                                                  DType::kF32)),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<GemmCase>);

INSTANTIATE_TEST_SUITE_P(CpuAwkwardTokensBf16, GemmBatchInvarianceTest,
                         ::testing::Combine(::testing::ValuesIn(AwkwardTokenCases(DType::kBF16,
                                                                                  DType::kBF16)),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<GemmCase>);

INSTANTIATE_TEST_SUITE_P(CpuAwkwardTokens, GemmTest,
                         ::testing::Combine(::testing::ValuesIn(AwkwardTokenCases(DType::kF32,
                                                                                  DType::kF32)),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<GemmCase>);

const GemmCase kCases[] = {
    {"decode1", 1, 256, 64, DType::kF32, DType::kBF16, DType::kF32, false},
    {"decode1_odd", 1, 13, 7, DType::kF32, DType::kBF16, DType::kF32, false},
    {"in1", 3, 1, 5, DType::kF32, DType::kBF16, DType::kF32, true},
    {"tokens2_bias", 2, 200, 33, DType::kF32, DType::kBF16, DType::kF32, true},
    {"tokens5_bf16", 5, 96, 40, DType::kBF16, DType::kBF16, DType::kBF16, false},
    {"tokens7_f32w", 7, 67, 19, DType::kF32, DType::kF32, DType::kF32, true},
    {"tokens32", 32, 512, 130, DType::kF32, DType::kBF16, DType::kF32, false},
    {"tokens32_bf16out", 32, 128, 64, DType::kF32, DType::kBF16, DType::kBF16, false},
    {"long_k", 2, 4099, 9, DType::kF32, DType::kBF16, DType::kF32, false},
    {"blas64", 64, 256, 200, DType::kF32, DType::kBF16, DType::kF32, true},
    {"blas100_odd", 100, 77, 131, DType::kBF16, DType::kBF16, DType::kBF16, false},
    {"blas70_f32w", 70, 64, 300, DType::kF32, DType::kF32, DType::kF32, false},
    {"empty", 0, 16, 8, DType::kF32, DType::kBF16, DType::kF32, false},
};

INSTANTIATE_TEST_SUITE_P(Cpu, GemmTest,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<GemmCase>);

TEST(GemmErrors, ShapeMismatchIsInvalidArgument) {
  auto backend = *CpuBackend::Create({});
  Tensor x = *Tensor::Zeros(DType::kF32, {2, 8});
  Tensor w = *Tensor::Zeros(DType::kBF16, {4, 9});
  Tensor out = *Tensor::Zeros(DType::kF32, {2, 4});
  absl::Status s = backend->Linear(x, w, Tensor(), out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("linear: weight"), std::string_view::npos) << s;
}

}  // namespace
}  // namespace expertmesh::testing
