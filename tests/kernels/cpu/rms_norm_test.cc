// RMSNorm (with and without the fused residual add), embedding lookup and SiLU*mul against
// double references.
#include <cmath>
#include <random>

#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

struct NormCase {
  std::string name;
  int64_t rows, dim;
  DType dtype, w_dtype;
  bool residual;
};

class RmsNormTest : public CpuOpTest<NormCase> {};

TEST_P(RmsNormTest, MatchesDoubleReference) {
  std::mt19937 rng(static_cast<unsigned>(c().rows * 31 + c().dim));
  const float eps = 1e-6f;
  Tensor x = RandomTensor(c().dtype, {c().rows, c().dim}, rng, -2.0f, 2.0f);
  Tensor r = RandomTensor(c().dtype, {c().rows, c().dim}, rng, -2.0f, 2.0f);
  Tensor w = RandomTensor(c().w_dtype, {c().dim}, rng, 0.5f, 1.5f);
  const std::vector<double> xd = ToDoubles(x), rd = ToDoubles(r), wd = ToDoubles(w);
  GuardedTensor out(c().dtype, {c().rows, c().dim});
  ASSERT_TRUE(backend_->RmsNorm(x, c().residual ? &r : nullptr, w, eps, out.tensor()).ok());
  EXPECT_TRUE(out.GuardsIntact());

  std::vector<double> ref(xd.size()), ref_res(xd.size());
  for (int64_t i = 0; i < c().rows; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < c().dim; ++j) {
      const int64_t k = i * c().dim + j;
      ref_res[k] = c().residual ? xd[k] + rd[k] : xd[k];
      ss += ref_res[k] * ref_res[k];
    }
    const double inv = 1.0 / std::sqrt(ss / c().dim + eps);
    for (int64_t j = 0; j < c().dim; ++j) {
      const int64_t k = i * c().dim + j;
      ref[k] = wd[j] * ref_res[k] * inv;
    }
  }
  // bf16: the residual sum is rounded before normalising, then the output twice: ~3 ulps.
  Tolerance tol = ToleranceFor(c().dtype);
  if (c().dtype == DType::kBF16) tol.rtol = tol.atol = 3e-2;
  EXPECT_TRUE(TensorsClose(out.tensor(), ref, tol));
  if (c().residual) {
    EXPECT_TRUE(TensorsClose(r, ref_res, ToleranceFor(c().dtype)));
  }
}

TEST_P(RmsNormTest, InPlaceEqualsOutOfPlace) {
  std::mt19937 rng(5);
  Tensor x = RandomTensor(c().dtype, {c().rows, c().dim}, rng);
  Tensor w = RandomTensor(c().w_dtype, {c().dim}, rng);
  Tensor out = *Tensor::Empty(c().dtype, {c().rows, c().dim});
  ASSERT_TRUE(backend_->RmsNorm(x, nullptr, w, 1e-5f, out).ok());
  ASSERT_TRUE(backend_->RmsNorm(x, nullptr, w, 1e-5f, x).ok());
  EXPECT_TRUE(TensorsEqual(x, out));
}

const NormCase kNormCases[] = {
    {"one_token", 1, 64, DType::kF32, DType::kBF16, false},
    {"residual", 5, 96, DType::kF32, DType::kBF16, true},
    {"odd_dim", 3, 37, DType::kF32, DType::kF32, true},
    {"bf16", 17, 128, DType::kBF16, DType::kBF16, true},
    {"per_head_qk_norm", 64, 128, DType::kF32, DType::kBF16, false},
    {"wide", 2, 4096, DType::kF32, DType::kBF16, true},
};

INSTANTIATE_TEST_SUITE_P(Cpu, RmsNormTest,
                         ::testing::Combine(::testing::ValuesIn(kNormCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<NormCase>);

struct ElemCase {
  std::string name;
  int64_t n, width;
  DType dtype;
};

class ElementwiseTest : public CpuOpTest<ElemCase> {};

TEST_P(ElementwiseTest, SiluMulMatchesReference) {
  std::mt19937 rng(11);
  Tensor gu = RandomTensor(c().dtype, {c().n, 2 * c().width}, rng, -6.0f, 6.0f);
  GuardedTensor out(c().dtype, {c().n, c().width});
  ASSERT_TRUE(backend_->SiluMul(gu, out.tensor()).ok());
  EXPECT_TRUE(out.GuardsIntact());
  const std::vector<double> g = ToDoubles(gu);
  std::vector<double> ref(c().n * c().width);
  for (int64_t t = 0; t < c().n; ++t) {
    for (int64_t i = 0; i < c().width; ++i) {
      const double a = g[t * 2 * c().width + i], b = g[t * 2 * c().width + c().width + i];
      ref[t * c().width + i] = a / (1.0 + std::exp(-a)) * b;
    }
  }
  Tolerance tol = ToleranceFor(c().dtype);
  if (c().dtype == DType::kBF16) tol.rtol = tol.atol = 2e-2;
  EXPECT_TRUE(TensorsClose(out.tensor(), ref, tol));
}

TEST_P(ElementwiseTest, EmbeddingCopiesRows) {
  std::mt19937 rng(12);
  const int64_t vocab = 50;
  Tensor table = RandomTensor(DType::kBF16, {vocab, c().width}, rng);
  std::vector<int32_t> ids(c().n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
  ids.back() = vocab - 1;
  GuardedTensor out(c().dtype, {c().n, c().width});
  ASSERT_TRUE(backend_->Embedding(table, I32Tensor(ids, {c().n}), out.tensor()).ok());
  EXPECT_TRUE(out.GuardsIntact());
  const std::vector<double> td = ToDoubles(table);
  std::vector<double> ref;
  for (int32_t id : ids)
    ref.insert(ref.end(), td.begin() + id * c().width, td.begin() + (id + 1) * c().width);
  EXPECT_TRUE(TensorsClose(out.tensor(), ref, {.atol = 0, .rtol = 0}));  // bf16 -> f32/bf16 exact
}

TEST_P(ElementwiseTest, EmbeddingRejectsOutOfVocabularyIds) {
  Tensor table = *Tensor::Zeros(DType::kBF16, {10, c().width});
  Tensor out = *Tensor::Empty(c().dtype, {2, c().width});
  absl::Status s = backend_->Embedding(table, I32Tensor({3, 10}, {2}), out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token id 10 at position 1"), std::string_view::npos) << s;
  s = backend_->Embedding(table, I32Tensor({-1, 0}, {2}), out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

const ElemCase kElemCases[] = {
    {"one", 1, 8, DType::kF32},
    {"odd", 7, 13, DType::kF32},
    {"bf16", 9, 256, DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Cpu, ElementwiseTest,
                         ::testing::Combine(::testing::ValuesIn(kElemCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<ElemCase>);

}  // namespace
}  // namespace expertmesh::testing
