// Linear and MoeGroupedLinear with q4 weights (int4 groups, kernels/q4_layout.h): against a
// double reference over the dequantized weights ((q - zero) x scale, rounded once to fp32), on
// the streaming, bf16 dot-product, AMX and BLAS paths, for symmetric and asymmetric groups of 32
// and 128, slices that start inside a group (row and column offsets), GPTQ act-order column
// orders, and batch invariance; plus the argument errors.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>

#include "kernels/q4_layout.h"
#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

struct Q4Case {
  std::string name;
  int64_t n, in, out;
  int64_t group;
  int64_t row_offset, col_offset;  // where the weight starts in its checkpoint's group grid
  bool zero_points;                // asymmetric (GPTQ sym=false)
  bool column_order;               // GPTQ act-order
  DType x_dtype, out_dtype;
};

constexpr float kScaleLo = 0.01f, kScaleHi = 0.05f;

// A q4 weight [rows, cols] cut from a larger checkpoint tensor at (row_offset, col_offset), with
// the full tensor's group grids attached, as the weight loader hands out slices.
Tensor RandomQ4Weight(const Q4Case& c, std::mt19937& rng) {
  const int64_t rows = c.out, cols = c.in;
  const int64_t full_rows = c.row_offset + rows, full_cols = c.col_offset + cols;
  std::uniform_int_distribution<int> nibble(0, 15);
  std::vector<uint8_t> values(static_cast<size_t>(full_rows * cols));
  for (uint8_t& v : values) v = static_cast<uint8_t>(nibble(rng));
  Tensor packed = *Tensor::Empty(DType::kQ4, {full_rows, cols});
  for (int64_t r = 0; r < full_rows; ++r) {
    kernels::PackQ4Row(values.data() + r * cols, cols, packed.data<uint8_t>() + r * cols / 2);
  }
  const int64_t groups = (full_cols + c.group - 1) / c.group;
  auto scales = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {full_rows, groups}));
  std::uniform_real_distribution<float> scale(kScaleLo, kScaleHi);
  for (int64_t i = 0; i < scales->numel(); ++i) scales->data<float>()[i] = scale(rng);
  kernels::BlockScales b{.scales = scales,
                         .block_rows = 1,
                         .block_cols = c.group,
                         .row_offset = 0,
                         .col_offset = c.col_offset};
  if (c.zero_points) {
    auto zeros = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {full_rows, groups}));
    for (int64_t i = 0; i < zeros->numel(); ++i) zeros->data<float>()[i] = float(nibble(rng));
    b.zero_points = zeros;
  }
  if (c.column_order) {
    auto order = std::make_shared<Tensor>(*Tensor::Empty(DType::kI32, {cols}));
    std::iota(order->data<int32_t>(), order->data<int32_t>() + cols, 0);
    std::shuffle(order->data<int32_t>(), order->data<int32_t>() + cols, rng);
    b.column_order = order;
  }
  return *packed.WithBlockScales(std::move(b))->Slice(c.row_offset, full_rows);
}

// The dequantized weight in doubles, columns in input order (a column order undone).
std::vector<double> Dequantized(const Tensor& w) {
  const kernels::BlockScales& s = *w.block_scales();
  const int64_t rows = w.dim(0), cols = w.dim(1), ld = s.scales->dim(1);
  std::vector<double> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = w.data<uint8_t>() + r * cols / 2;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t g =
          ((r + s.row_offset) / s.block_rows) * ld + (j + s.col_offset) / s.block_cols;
      const float zero = s.zero_points == nullptr ? 8.0f : s.zero_points->data<float>()[g];
      const float value =
          (float(kernels::Q4Value(row, cols, j)) - zero) * s.scales->data<float>()[g];
      const int64_t column = s.column_order == nullptr ? j : s.column_order->data<int32_t>()[j];
      out[r * cols + column] = value;
    }
  }
  return out;
}

// Weights are below 15 x kScaleHi: fp32 sums of `in` such terms. With bf16 activations:
//  - AVX512_BF16 keeps every weight exact but sums each group beside about twice the sum of its
//    activations, which the group correction takes back (kernels_avx512_bf16_q4.cc): up to 5 of
//    fp32's bits, so 32 times the fp32 bound;
//  - AMX rounds each weight to bf16 for its tiles (kernel_table.h, amx_gemm_q4), a relative
//    2^-9: sums of `in` terms of random sign stay within 2^-9 x bound x sqrt(in); so does
//    AVX512_BF16 from kDefaultQ4WidenMinTokens tokens per weight on (widen_q4_bf16, cpu_linear.cc;
//    grouped cases, n = 0 here, have experts on both sides of it).
Tolerance Q4Tolerance(const Q4Case& c, CpuIsa isa) {
  const double bound = 15 * kScaleHi;
  const double atol = 2e-6 * bound * std::sqrt(double(c.in));
  const bool widened =
      isa == CpuIsa::kAvx512Bf16 && (c.n == 0 || c.n >= kernels::cpu::kDefaultQ4WidenMinTokens);
  if (c.x_dtype == DType::kBF16 && isa == CpuIsa::kAvx512Bf16 && !widened) {
    return ToleranceFor(c.out_dtype, 32 * atol);
  }
  if (c.x_dtype == DType::kBF16 && (isa == CpuIsa::kAmx || widened)) {
    // Grouped cases on AVX512_BF16 have experts on the exact kernel too (32 x atol).
    const double exact = widened ? 32 * atol : atol;
    Tolerance tol = ToleranceFor(c.out_dtype, exact + 0x1p-9 * bound * std::sqrt(double(c.in)));
    tol.min_cosine = std::min(tol.min_cosine, 0.9999);
    return tol;
  }
  return ToleranceFor(c.out_dtype, atol);
}

class Q4LinearTest : public CpuOpTest<Q4Case> {};

TEST_P(Q4LinearTest, MatchesTheDequantizedReference) {
  std::mt19937 rng(1234 + c().n * 13 + c().in);
  const Tensor w = RandomQ4Weight(c(), rng);
  const Tensor x = RandomTensor(c().x_dtype, {c().n, c().in}, rng);
  GuardedTensor out(c().out_dtype, {c().n, c().out});
  const absl::Status s = backend_->Linear(x, w, Tensor(), out.tensor());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(out.GuardsIntact());
  EXPECT_TRUE(TensorsClose(out.tensor(), LinearReference(x, Dequantized(w), c().out),
                           Q4Tolerance(c(), std::get<1>(GetParam()))));
}

const Q4Case kCases[] = {
    {"decode1_g128", 1, 256, 64, 128, 0, 0, false, false, DType::kF32, DType::kF32},
    {"decode1_g32_bf16", 1, 512, 40, 32, 0, 0, false, false, DType::kBF16, DType::kBF16},
    {"tokens3_asym_bf16", 3, 256, 37, 128, 0, 0, true, false, DType::kBF16, DType::kF32},
    {"tokens5_asym", 5, 384, 21, 128, 0, 0, true, false, DType::kF32, DType::kF32},
    {"tokens7_row_offset", 7, 256, 70, 128, 5, 0, false, false, DType::kF32, DType::kF32},
    {"tokens4_mid_group_cut", 4, 160, 20, 128, 0, 96, true, false, DType::kF32, DType::kF32},
    {"tokens6_mid_group_cut_bf16", 6, 192, 19, 128, 3, 64, true, false, DType::kBF16, DType::kF32},
    {"tokens2_act_order", 2, 256, 33, 64, 0, 0, true, true, DType::kF32, DType::kF32},
    {"tokens9_act_order_bf16", 9, 256, 33, 64, 0, 0, false, true, DType::kBF16, DType::kBF16},
    {"tokens20_g32_bf16", 20, 96, 45, 32, 0, 0, true, false, DType::kBF16, DType::kF32},
    {"blas64_offsets", 64, 256, 130, 128, 1, 32, true, false, DType::kF32, DType::kF32},
    {"blas70_bf16", 70, 256, 50, 32, 0, 0, false, false, DType::kBF16, DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Cpu, Q4LinearTest,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<Q4Case>);

// A token's output does not depend on its neighbours (on AVX512_BF16 one to three tokens widen
// the weights as they read them and more widen each strip once: the same bits either way).
class Q4BatchInvarianceTest : public CpuOpTest<Q4Case> {
 protected:
  bool BatchInvariant() const override { return true; }
};

TEST_P(Q4BatchInvarianceTest, ATokensOutputDoesNotDependOnItsBatch) {
  std::mt19937 rng(78);
  const Tensor w = RandomQ4Weight(c(), rng);
  const Tensor x = RandomTensor(c().x_dtype, {c().n, c().in}, rng);
  Tensor all = *Tensor::Empty(c().out_dtype, {c().n, c().out});
  ASSERT_TRUE(backend_->Linear(x, w, Tensor(), all).ok());
  for (int64_t t = 0; t < c().n; ++t) {
    Tensor one = *Tensor::Empty(c().out_dtype, {1, c().out});
    ASSERT_TRUE(backend_->Linear(*x.Slice(t, t + 1), w, Tensor(), one).ok());
    EXPECT_TRUE(TensorsEqual(one, *all.Slice(t, t + 1))) << "token " << t;
  }
}

const Q4Case kBatchCases[] = {
    {"tokens7_asym_offsets", 7, 256, 21, 128, 3, 32, true, false, DType::kF32, DType::kF32},
    {"tokens13_bf16", 13, 256, 12, 32, 0, 0, false, false, DType::kBF16, DType::kBF16},
    {"tokens5_asym_bf16", 5, 320, 9, 64, 0, 64, true, false, DType::kBF16, DType::kF32},
    // Groups of 6, 6, 6, 4 and 1 tokens on a widened strip.
    {"tokens23_asym_bf16", 23, 288, 10, 32, 1, 32, true, false, DType::kBF16, DType::kF32},
};

INSTANTIATE_TEST_SUITE_P(Cpu, Q4BatchInvarianceTest,
                         ::testing::Combine(::testing::ValuesIn(kBatchCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<Q4Case>);

// Experts of a grouped linear in q4, some idle, rows grouped as MoePermute leaves them.
class Q4GroupedTest : public CpuOpTest<Q4Case> {
 protected:
  int64_t BlasMinTokens() const override { return 8; }  // both paths across the experts
};

TEST_P(Q4GroupedTest, EveryExpertMatchesItsDequantizedReference) {
  std::mt19937 rng(98);
  const std::vector<int32_t> offsets = {0, 3, 3, 14, 15};  // expert 1 idle, 2 on BLAS
  const int64_t rows = offsets.back();
  std::vector<Tensor> weights;
  for (size_t e = 0; e + 1 < offsets.size(); ++e) weights.push_back(RandomQ4Weight(c(), rng));
  weights[1] = Tensor();  // an expert on another rank
  const Tensor x = RandomTensor(c().x_dtype, {rows, c().in}, rng);
  Tensor out = *Tensor::Empty(c().out_dtype, {rows, c().out});
  const absl::Status s = backend_->MoeGroupedLinear(x, I32Tensor(offsets, {5}), weights, out);
  ASSERT_TRUE(s.ok()) << s;
  const Tolerance tol = Q4Tolerance(c(), std::get<1>(GetParam()));
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    if (offsets[e] == offsets[e + 1]) continue;
    const Tensor xe = *x.Slice(offsets[e], offsets[e + 1]);
    EXPECT_TRUE(TensorsClose(*out.Slice(offsets[e], offsets[e + 1]),
                             LinearReference(xe, Dequantized(weights[e]), c().out), tol))
        << "expert " << e;
  }
}

const Q4Case kGroupedCases[] = {
    {"experts_g32", 0, 256, 48, 32, 0, 0, false, false, DType::kF32, DType::kF32},
    {"experts_asym_act_order_bf16", 0, 256, 24, 128, 0, 0, true, true, DType::kBF16, DType::kBF16},
    {"experts_tp_slice", 0, 192, 24, 128, 0, 64, false, false, DType::kBF16, DType::kF32},
};

INSTANTIATE_TEST_SUITE_P(Cpu, Q4GroupedTest,
                         ::testing::Combine(::testing::ValuesIn(kGroupedCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<Q4Case>);

TEST(Q4Errors, BadWeightsAndGridsAreRefused) {
  auto backend = *CpuBackend::Create({});
  Tensor x = *Tensor::Zeros(DType::kF32, {2, 64});
  Tensor out = *Tensor::Zeros(DType::kF32, {2, 4});
  Tensor bare = *Tensor::Zeros(DType::kQ4, {4, 64});
  EXPECT_EQ(bare.nbytes(), 128u);
  absl::Status s = backend->Linear(x, bare, Tensor(), out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has no block scales"), std::string_view::npos) << s;

  auto grid = std::make_shared<Tensor>(*Tensor::Zeros(DType::kF32, {4, 2}));
  auto ok = bare.WithBlockScales({.scales = grid, .block_rows = 1, .block_cols = 32});
  ASSERT_TRUE(ok.ok()) << ok.status();
  // Groups and cuts off the 32-value units.
  auto odd_group = bare.WithBlockScales({.scales = grid, .block_rows = 1, .block_cols = 48});
  EXPECT_NE(odd_group.status().message().find("multiples of 32"), std::string_view::npos)
      << odd_group.status();
  Tensor narrow = *Tensor::Zeros(DType::kQ4, {4, 48});
  EXPECT_FALSE(narrow.WithBlockScales({.scales = grid, .block_rows = 1, .block_cols = 32}).ok());
  // Zero points shaped unlike the scales, or on an fp8 weight.
  auto zeros = std::make_shared<Tensor>(*Tensor::Zeros(DType::kF32, {4, 1}));
  EXPECT_FALSE(bare.WithBlockScales(
                       {.scales = grid, .zero_points = zeros, .block_rows = 1, .block_cols = 32})
                   .ok());
  Tensor fp8 = *Tensor::Zeros(DType::kF8E4M3, {4, 64});
  auto fp8_grid = std::make_shared<Tensor>(*Tensor::Zeros(DType::kF32, {1, 1}));
  auto fp8_zeros = std::make_shared<Tensor>(*Tensor::Zeros(DType::kF32, {1, 1}));
  EXPECT_FALSE(fp8.WithBlockScales({.scales = fp8_grid, .zero_points = fp8_zeros}).ok());
  // A column order entry outside the row.
  auto order = std::make_shared<Tensor>(*Tensor::Zeros(DType::kI32, {64}));
  order->data<int32_t>()[7] = 64;
  auto bad_order = bare.WithBlockScales(
      {.scales = grid, .column_order = order, .block_rows = 1, .block_cols = 32});
  EXPECT_NE(bad_order.status().message().find("entry 7 is 64"), std::string_view::npos)
      << bad_order.status();
}

TEST(Q4Layout, PackedValuesReadBackInOrder) {
  // Two 64-wide units and a last one 32 wide.
  constexpr int64_t k = 160;
  std::vector<uint8_t> values(k);
  for (int64_t i = 0; i < k; ++i) values[i] = static_cast<uint8_t>((i * 7 + 3) % 16);
  std::vector<uint8_t> packed(k / 2);
  kernels::PackQ4Row(values.data(), k, packed.data());
  // Byte j of a 64-wide unit: value j low, value j + 32 high; of the 32-wide one: j and j + 16.
  EXPECT_EQ(packed[0], values[0] | values[32] << 4);
  EXPECT_EQ(packed[33], values[65] | values[97] << 4);
  EXPECT_EQ(packed[64 + 3], values[128 + 3] | values[144 + 3] << 4);
  for (int64_t i = 0; i < k; ++i) EXPECT_EQ(kernels::Q4Value(packed.data(), k, i), values[i]) << i;
}

}  // namespace
}  // namespace expertmesh::testing
