// Linear and MoeGroupedLinear with fp8 e4m3 block-quantized weights (W8A16): against a double
// reference over the dequantized weights (each weight its e4m3 value times its block scale,
// rounded once to fp32), on the streaming and the BLAS paths, for slices that start inside a
// scale block (row and column offsets), partial edge blocks, scales too large to fold with 2^120,
// and batch invariance; plus the argument errors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

struct Fp8Case {
  std::string name;
  int64_t n, in, out;
  int64_t block_rows, block_cols;
  int64_t row_offset, col_offset;  // where the weight starts in its checkpoint's block grid
  DType x_dtype, out_dtype;
  float scale_lo = 0.02f, scale_hi = 0.1f;
};

// A random normal e4m3 byte of magnitude below 4 (exponent field 1..8), never the NaN pattern.
// Weights quantized from a checkpoint are normal but for about 1 in 10^4 (subnormals are below
// 1/28000 of their block's largest value); the AVX512_BF16 kernel reads those as zero
// (kernel_table.h), the other kernels exactly, so they are left out of the random weights here.
uint8_t RandomE4m3(std::mt19937& rng) {
  std::uniform_int_distribution<int> exponent(1, 8), mantissa(0, 7), sign(0, 1);
  return static_cast<uint8_t>((sign(rng) << 7) | (exponent(rng) << 3) | mantissa(rng));
}

// An fp8 weight [rows, cols] cut from a larger checkpoint tensor at (row_offset, col_offset),
// with the full tensor's block-scale grid attached, as the weight loader hands out slices.
Tensor RandomFp8Weight(const Fp8Case& c, int64_t rows, int64_t cols, std::mt19937& rng) {
  const int64_t full_rows = c.row_offset + rows, full_cols = c.col_offset + cols;
  Tensor full = *Tensor::Empty(DType::kF8E4M3, {full_rows, full_cols});
  for (int64_t i = 0; i < full.numel(); ++i) full.data<uint8_t>()[i] = RandomE4m3(rng);
  const int64_t grid_rows = (full_rows + c.block_rows - 1) / c.block_rows;
  const int64_t grid_cols = (full_cols + c.block_cols - 1) / c.block_cols;
  auto grid = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {grid_rows, grid_cols}));
  std::uniform_real_distribution<float> scale(c.scale_lo, c.scale_hi);
  for (int64_t i = 0; i < grid->numel(); ++i) grid->data<float>()[i] = scale(rng);
  // Columns are copied (a row-parallel slice), rows are a view (Slice moves the row offset).
  Tensor cut = *Tensor::Empty(DType::kF8E4M3, {full_rows, cols});
  for (int64_t r = 0; r < full_rows; ++r) {
    std::memcpy(cut.data<uint8_t>() + r * cols, full.data<uint8_t>() + r * full_cols + c.col_offset,
                cols);
  }
  Tensor scaled = *cut.WithBlockScales({.scales = grid,
                                        .block_rows = c.block_rows,
                                        .block_cols = c.block_cols,
                                        .row_offset = 0,
                                        .col_offset = c.col_offset});
  return *scaled.Slice(c.row_offset, full_rows);
}

// The dequantized weight in doubles: fp32(value) * scale rounded to fp32, as the reference does.
std::vector<double> Dequantized(const Tensor& w) {
  const kernels::BlockScales& s = *w.block_scales();
  const int64_t rows = w.dim(0), cols = w.dim(1), ld = s.scales->dim(1);
  std::vector<double> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) {
      const float scale = s.scales->data<float>()[((r + s.row_offset) / s.block_rows) * ld +
                                                  (i + s.col_offset) / s.block_cols];
      out[r * cols + i] = F8E4M3ToFloat(w.data<uint8_t>()[r * cols + i]) * scale;
    }
  }
  return out;
}

// Weights are below 4 * scale_hi here: fp32 sums of `in` such terms. With bf16 activations the
// AMX family rounds each weight w x s to bf16 (kernel_table.h, amx_gemm_f8) and AVX512_BF16 each
// activation times its scale, x s (gemm_f8_xbf16), a relative 2^-9 per product: sums of `in`
// terms of random sign stay within 2^-9 * 4 * scale_hi * sqrt(in) (many standard deviations).
Tolerance Fp8Tolerance(const Fp8Case& c, CpuIsa isa) {
  const double bound = 4 * c.scale_hi;
  const double atol = 2e-6 * bound * std::sqrt(double(c.in));
  if ((isa == CpuIsa::kAmx || isa == CpuIsa::kAvx512Bf16) && c.x_dtype == DType::kBF16) {
    // The cosine of bf16 weights (ToleranceFor's bf16 one).
    Tolerance tol = ToleranceFor(c.out_dtype, atol + 0x1p-9 * bound * std::sqrt(double(c.in)));
    tol.min_cosine = std::min(tol.min_cosine, 0.9999);
    return tol;
  }
  return ToleranceFor(c.out_dtype, atol);
}

class Fp8LinearTest : public CpuOpTest<Fp8Case> {};

TEST_P(Fp8LinearTest, MatchesTheDequantizedReference) {
  std::mt19937 rng(4321 + c().n * 13 + c().in);
  const Tensor w = RandomFp8Weight(c(), c().out, c().in, rng);
  const Tensor x = RandomTensor(c().x_dtype, {c().n, c().in}, rng);
  GuardedTensor out(c().out_dtype, {c().n, c().out});
  const absl::Status s = backend_->Linear(x, w, Tensor(), out.tensor());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(out.GuardsIntact());
  const Tolerance tol = Fp8Tolerance(c(), std::get<1>(GetParam()));
  EXPECT_TRUE(TensorsClose(out.tensor(), LinearReference(x, Dequantized(w), c().out), tol));
}

// On the streaming path a token's output does not depend on its neighbours (the BLAS path of
// prefill-sized products is another summation).
class Fp8BatchInvarianceTest : public CpuOpTest<Fp8Case> {
 protected:
  bool BatchInvariant() const override { return true; }
};

TEST_P(Fp8BatchInvarianceTest, ATokensOutputDoesNotDependOnItsBatch) {
  std::mt19937 rng(77);
  const Tensor w = RandomFp8Weight(c(), c().out, c().in, rng);
  const Tensor x = RandomTensor(c().x_dtype, {c().n, c().in}, rng);
  Tensor all = *Tensor::Empty(c().out_dtype, {c().n, c().out});
  ASSERT_TRUE(backend_->Linear(x, w, Tensor(), all).ok());
  for (int64_t t = 0; t < c().n; ++t) {
    Tensor one = *Tensor::Empty(c().out_dtype, {1, c().out});
    ASSERT_TRUE(backend_->Linear(*x.Slice(t, t + 1), w, Tensor(), one).ok());
    EXPECT_TRUE(TensorsEqual(one, *all.Slice(t, t + 1))) << "token " << t;
  }
}

const Fp8Case kCases[] = {
    {"decode1", 1, 256, 64, 128, 128, 0, 0, DType::kF32, DType::kF32},
    {"decode1_bf16", 1, 512, 40, 128, 128, 0, 0, DType::kBF16, DType::kBF16},
    {"tokens5_partial_blocks", 5, 300, 37, 128, 128, 0, 0, DType::kF32, DType::kF32},
    {"tokens7_row_offset", 7, 256, 70, 128, 128, 96, 0, DType::kF32, DType::kF32},
    {"tokens3_col_offset", 3, 200, 20, 128, 128, 0, 64, DType::kF32, DType::kF32},
    {"tokens2_odd_offsets", 2, 131, 9, 128, 128, 5, 77, DType::kF32, DType::kF32},
    {"small_blocks", 4, 100, 30, 16, 32, 3, 9, DType::kF32, DType::kF32},
    {"huge_scales", 3, 256, 12, 128, 128, 0, 0, DType::kF32, DType::kF32, 300.0f, 900.0f},
    {"huge_scales_bf16", 3, 256, 12, 128, 128, 0, 0, DType::kBF16, DType::kF32, 300.0f, 900.0f},
    {"odd_offsets_bf16", 5, 300, 11, 128, 128, 5, 77, DType::kBF16, DType::kF32},
    {"tail_past_block_bf16", 7, 301, 9, 128, 128, 0, 124, DType::kBF16, DType::kF32},
    // Several token groups and blocks of scaled activations on AVX512_BF16: offsets, partial
    // blocks, scales too large to fold with 2^120, rows in several scale rows.
    {"tokens12_offsets_bf16", 12, 300, 37, 128, 128, 5, 77, DType::kBF16, DType::kF32},
    {"tokens30_huge_scales_bf16", 30, 256, 70, 128, 128, 96, 64, DType::kBF16, DType::kF32, 300.0f,
     900.0f},
    {"tokens70_rows140_bf16", 70, 200, 140, 128, 128, 5, 0, DType::kBF16, DType::kF32},
    // Scales from 2^27 to 2^30: x s x 2^100 overflows for some blocks, so AVX512_BF16 checks
    // each value (scales below 2^28) or folds the blocks instead (from 2^28), per scale row.
    {"overflowing_scales_bf16", 9, 300, 140, 128, 128, 5, 77, DType::kBF16, DType::kF32, 0x1p27f,
     0x1p30f},
    {"blas64_offsets", 64, 256, 130, 128, 128, 64, 32, DType::kF32, DType::kF32},
    {"blas70_bf16", 70, 300, 50, 128, 128, 0, 0, DType::kBF16, DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Cpu, Fp8LinearTest,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<Fp8Case>);

const Fp8Case kBatchCases[] = {
    {"tokens7_offsets", 7, 300, 21, 128, 128, 96, 77, DType::kF32, DType::kF32},
    {"tokens13_bf16", 13, 256, 12, 128, 128, 0, 0, DType::kBF16, DType::kBF16},
    // Groups of 6, 6, 6 and 5 tokens (AVX2: seven of 3, one of 2), with large block scales.
    {"tokens23_huge_scales_bf16", 23, 300, 9, 128, 128, 5, 77, DType::kBF16, DType::kF32, 300.0f,
     900.0f},
};

INSTANTIATE_TEST_SUITE_P(Cpu, Fp8BatchInvarianceTest,
                         ::testing::Combine(::testing::ValuesIn(kBatchCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<Fp8Case>);

// Experts of a grouped linear in fp8, some idle, rows grouped as MoePermute leaves them.
class Fp8GroupedTest : public CpuOpTest<Fp8Case> {
 protected:
  int64_t BlasMinTokens() const override { return 8; }  // both paths across the experts
};

TEST_P(Fp8GroupedTest, EveryExpertMatchesItsDequantizedReference) {
  std::mt19937 rng(99);
  const std::vector<int32_t> offsets = {0, 3, 3, 14, 15};  // expert 1 idle, 2 on BLAS
  const int64_t rows = offsets.back();
  std::vector<Tensor> weights;
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    weights.push_back(RandomFp8Weight(c(), c().out, c().in, rng));
  }
  weights[1] = Tensor();  // an expert on another rank
  const Tensor x = RandomTensor(c().x_dtype, {rows, c().in}, rng);
  Tensor out = *Tensor::Empty(c().out_dtype, {rows, c().out});
  const absl::Status s = backend_->MoeGroupedLinear(x, I32Tensor(offsets, {5}), weights, out);
  ASSERT_TRUE(s.ok()) << s;
  const Tolerance tol = Fp8Tolerance(c(), std::get<1>(GetParam()));
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    if (offsets[e] == offsets[e + 1]) continue;
    const Tensor xe = *x.Slice(offsets[e], offsets[e + 1]);
    EXPECT_TRUE(TensorsClose(*out.Slice(offsets[e], offsets[e + 1]),
                             LinearReference(xe, Dequantized(weights[e]), c().out), tol))
        << "expert " << e;
  }
}

const Fp8Case kGroupedCases[] = {
    {"experts", 0, 256, 48, 128, 128, 0, 0, DType::kF32, DType::kF32},
    {"experts_tp_slice", 0, 192, 24, 128, 128, 64, 0, DType::kBF16, DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Cpu, Fp8GroupedTest,
                         ::testing::Combine(::testing::ValuesIn(kGroupedCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<Fp8Case>);

TEST(Fp8Errors, AWeightWithoutScalesOrABadGridIsRefused) {
  auto backend = *CpuBackend::Create({});
  Tensor x = *Tensor::Zeros(DType::kF32, {2, 8});
  Tensor out = *Tensor::Zeros(DType::kF32, {2, 4});
  Tensor bare = *Tensor::Zeros(DType::kF8E4M3, {4, 8});
  absl::Status s = backend->Linear(x, bare, Tensor(), out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has no block scales"), std::string_view::npos) << s;

  auto small = std::make_shared<Tensor>(*Tensor::Zeros(DType::kF32, {1, 1}));
  auto grid = bare.WithBlockScales({.scales = small, .block_rows = 2, .block_cols = 128});
  EXPECT_EQ(grid.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(grid.status().message().find("do not cover"), std::string_view::npos) << grid.status();
  auto f16 = std::make_shared<Tensor>(*Tensor::Zeros(DType::kF16, {4, 1}));
  EXPECT_FALSE(bare.WithBlockScales({.scales = f16}).ok());
  EXPECT_FALSE((*Tensor::Zeros(DType::kBF16, {4, 8})).WithBlockScales({.scales = small}).ok());
}

}  // namespace
}  // namespace expertmesh::testing
