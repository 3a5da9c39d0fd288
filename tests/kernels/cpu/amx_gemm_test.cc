// The AMX family's tile GEMM (kernels_amx.cc) against the scalar family and a double reference,
// over shapes that cut its tiles everywhere: rows, columns and k off multiples of 16/32/64, odd
// k tails, 1..100 tokens, grouped products with uneven expert counts including zero. Skipped,
// with the reason, on CPUs (or kernels) without AMX.
//
// Tolerance: the activations and weights are bf16, so every product is exact in fp32 and the
// only error is the fp32 accumulation. Its order differs between the families (AMX: the tile
// unit's own order inside each 32-wide k step, then k steps in sequence; scalar: 8 interleaved
// partial sums), so results agree to fp32 rounding, not bit for bit. The classical bound for a
// sum of k terms in any order is (k - 1) u sum |x_i w_i| (u = 2^-24); each output is checked
// against the double reference within twice that (the AMX unit flushes denormal inputs, which
// these values never are), and against the scalar family within the sum of both bounds.
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "kernels/cpu/cpu_features.h"
#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

using kernels::cpu::CpuBackendOptions;
using kernels::cpu::CpuSupports;

std::unique_ptr<CpuBackend> MakeBackend(CpuIsa isa, int64_t amx_min_tokens = 1) {
  CpuBackendOptions options;
  options.num_threads = 2;
  options.isa = isa;
  options.amx_min_tokens = amx_min_tokens;
  options.copy_weights = false;
  auto backend = CpuBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

#define SKIP_WITHOUT_AMX()                                                                  \
  if (!CpuSupports(CpuIsa::kAmx)) {                                                         \
    GTEST_SKIP() << "this CPU (or its kernel) offers no AMX-BF16 tiles: the amx family is " \
                    "unavailable here";                                                     \
  }

// Per-output error bound of an fp32 sum of k products, doubled: 2 (k - 1) 2^-24 sum |x w|.
struct Reference {
  std::vector<double> value, bound;
};

Reference Multiply(const Tensor& x, const Tensor& w, int64_t row0, int64_t n) {
  const int64_t k = x.dim(1), m = w.dim(0);
  const std::vector<double> xd = ToDoubles(x), wd = ToDoubles(w);
  Reference ref{std::vector<double>(n * m), std::vector<double>(n * m)};
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < m; ++o) {
      double s = 0, a = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = xd[(row0 + t) * k + i] * wd[o * k + i];
        s += p;
        a += std::fabs(p);
      }
      ref.value[t * m + o] = s;
      ref.bound[t * m + o] = 2.0 * static_cast<double>(std::max<int64_t>(k - 1, 1)) * 0x1p-24 * a;
    }
  }
  return ref;
}

// out (f32 [n, m]) within the bound of the reference; names the worst element otherwise.
::testing::AssertionResult WithinBound(const Tensor& out, const Reference& ref,
                                       double bound_scale = 1.0, const Tensor* other = nullptr) {
  const float* o = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i) {
    const double expected = other != nullptr ? other->data<float>()[i] : ref.value[i];
    const double err = std::fabs(o[i] - expected);
    if (!(err <= ref.bound[i] * bound_scale)) {
      return ::testing::AssertionFailure()
             << "element " << i << " (token " << i / out.dim(1) << ", row " << i % out.dim(1)
             << "): " << o[i] << " vs " << expected << ", error " << err << " > bound "
             << ref.bound[i] * bound_scale;
    }
  }
  return ::testing::AssertionSuccess();
}

struct AmxCase {
  std::string name;
  int64_t n, k, m;
  friend void PrintTo(const AmxCase& c, std::ostream* os) {
    *os << c.name << " (n " << c.n << ", k " << c.k << ", rows " << c.m << ")";
  }
};

class AmxLinearTest : public ::testing::TestWithParam<AmxCase> {};

TEST_P(AmxLinearTest, MatchesScalarAndDoubleReference) {
  SKIP_WITHOUT_AMX();
  const AmxCase& c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(17 + c.n * 131 + c.k * 7 + c.m));
  Tensor x = RandomTensor(DType::kBF16, {c.n, c.k}, rng);
  Tensor w = RandomTensor(DType::kBF16, {c.m, c.k}, rng, -0.5f, 0.5f);
  auto amx = MakeBackend(CpuIsa::kAmx);
  auto scalar = MakeBackend(CpuIsa::kScalar);
  ASSERT_NE(amx, nullptr);
  GuardedTensor out(DType::kF32, {c.n, c.m});
  ASSERT_TRUE(amx->Linear(x, w, Tensor(), out.tensor()).ok());
  EXPECT_TRUE(out.GuardsIntact());
  Tensor ref_out = *Tensor::Empty(DType::kF32, {c.n, c.m});
  ASSERT_TRUE(scalar->Linear(x, w, Tensor(), ref_out).ok());
  const Reference ref = Multiply(x, w, 0, c.n);
  EXPECT_TRUE(WithinBound(out.tensor(), ref));
  EXPECT_TRUE(WithinBound(out.tensor(), ref, 2.0, &ref_out)) << "against the scalar family";
  // bf16 output: the same sums, rounded once more.
  GuardedTensor out16(DType::kBF16, {c.n, c.m});
  ASSERT_TRUE(amx->Linear(x, w, Tensor(), out16.tensor()).ok());
  EXPECT_TRUE(out16.GuardsIntact());
  for (int64_t i = 0; i < c.n * c.m; ++i) {
    ASSERT_EQ(out16.tensor().data<uint16_t>()[i], FloatToBf16(out.tensor().data<float>()[i]))
        << "element " << i;
  }
}

const AmxCase kAmxCases[] = {
    {"one_token", 1, 64, 32},
    {"k1", 3, 1, 17},
    {"k3_odd", 5, 3, 33},
    {"k31", 16, 31, 16},
    {"k33", 17, 33, 31},
    {"k63_rows15", 33, 63, 15},
    {"k65_rows47", 31, 65, 47},
    {"k127", 64, 127, 64},
    {"k130_rows70", 100, 130, 70},
    {"k1000_tail8", 48, 1000, 96},
    {"k257_rows1", 7, 257, 1},
    {"tokens100_k96_rows200", 100, 96, 200},
    {"prefill_chunked", 300, 160, 40},  // more than one 256-token chunk of the kernel
};

INSTANTIATE_TEST_SUITE_P(Cpu, AmxLinearTest, ::testing::ValuesIn(kAmxCases),
                         [](const auto& info) { return info.param.name; });

// Every token count from 1 to 100 on one awkward shape: each output is within the bound, and
// each token's output equals, bit for bit, what it gets alone (batching invariance: the same
// chain of tile products per output whatever the batch).
TEST(AmxLinearTokens, OneToHundredTokensMatchAndAreBatchInvariant) {
  SKIP_WITHOUT_AMX();
  const int64_t k = 77, m = 45, max_n = 100;
  std::mt19937 rng(7);
  Tensor x = RandomTensor(DType::kBF16, {max_n, k}, rng);
  Tensor w = RandomTensor(DType::kBF16, {m, k}, rng, -0.5f, 0.5f);
  auto amx = MakeBackend(CpuIsa::kAmx);
  ASSERT_NE(amx, nullptr);
  const Reference all = Multiply(x, w, 0, max_n);
  std::vector<Tensor> alone(max_n);
  for (int64_t t = 0; t < max_n; ++t) {
    alone[t] = *Tensor::Empty(DType::kF32, {1, m});
    ASSERT_TRUE(amx->Linear(*x.Slice(t, t + 1), w, Tensor(), alone[t]).ok());
  }
  for (int64_t n = 1; n <= max_n; ++n) {
    Tensor out = *Tensor::Empty(DType::kF32, {n, m});
    ASSERT_TRUE(amx->Linear(*x.Slice(0, n), w, Tensor(), out).ok());
    Reference ref{std::vector<double>(all.value.begin(), all.value.begin() + n * m),
                  std::vector<double>(all.bound.begin(), all.bound.begin() + n * m)};
    ASSERT_TRUE(WithinBound(out, ref)) << "n = " << n;
    for (int64_t t = 0; t < n; ++t) {
      ASSERT_TRUE(TensorsEqual(*out.Slice(t, t + 1), alone[t])) << "n = " << n << ", token " << t;
    }
  }
}

// Grouped expert GEMM with uneven counts (0, 1, 17, 0, 40, 3, 64, 2 rows): each expert's block
// against its own double reference, and each expert's rows bit-identical to the same rows
// multiplied on their own (the grouping does not change a row's result).
TEST(AmxGroupedLinear, UnevenExpertCountsIncludingZero) {
  SKIP_WITHOUT_AMX();
  const std::vector<int32_t> counts = {0, 1, 17, 0, 40, 3, 64, 2};
  const int64_t k = 200, m = 72;  // k = 6 x 32 + 8: a tail in every row block
  std::vector<int32_t> offsets{0};
  for (int32_t c : counts) offsets.push_back(offsets.back() + c);
  const int64_t rows = offsets.back();
  std::mt19937 rng(11);
  Tensor x = RandomTensor(DType::kBF16, {rows, k}, rng);
  std::vector<Tensor> w(counts.size());
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] > 0) w[e] = RandomTensor(DType::kBF16, {m, k}, rng, -0.5f, 0.5f);
  }
  auto amx = MakeBackend(CpuIsa::kAmx);
  ASSERT_NE(amx, nullptr);
  Tensor off = I32Tensor(offsets, {static_cast<int64_t>(offsets.size())});
  GuardedTensor y(DType::kF32, {rows, m});
  absl::Status s = amx->MoeGroupedLinear(x, off, w, y.tensor());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(y.GuardsIntact());
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) continue;
    const int64_t r0 = offsets[e], r1 = offsets[e + 1];
    const Reference ref = Multiply(x, w[e], r0, r1 - r0);
    Tensor block = *y.tensor().Slice(r0, r1);
    EXPECT_TRUE(WithinBound(block, ref)) << "expert " << e;
    Tensor alone = *Tensor::Empty(DType::kF32, {r1 - r0, m});
    ASSERT_TRUE(amx->Linear(*x.Slice(r0, r1), w[e], Tensor(), alone).ok());
    EXPECT_TRUE(TensorsEqual(block, alone)) << "expert " << e;
  }
}

struct AmxFp8Case {
  std::string name;
  int64_t n, k, m, row_offset, col_offset;
  friend void PrintTo(const AmxFp8Case& c, std::ostream* os) {
    *os << c.name << " (n " << c.n << ", k " << c.k << ", rows " << c.m << ", offsets "
        << c.row_offset << ", " << c.col_offset << ")";
  }
};

class AmxFp8LinearTest : public ::testing::TestWithParam<AmxFp8Case> {};

// With the weights rounded as the kernel rounds them, what is left is the error of an fp32 sum
// of k exact products: within the bound of Multiply (2 (k - 1) u sum |x w|), here widened to
// 2 (k + 2) u. Shapes: k tails and partial 128-wide scale blocks, scale blocks starting
// mid-tile (column offsets 64 and 96, row offsets 5 and 96), row counts that are no multiple
// of 32, from 1 to 100 tokens.
TEST_P(AmxFp8LinearTest, MatchesTheDequantizedReference) {
  SKIP_WITHOUT_AMX();
  const AmxFp8Case& c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(5 + c.n * 31 + c.k));
  const Tensor w = Fp8BlockWeight(c.m, c.k, c.row_offset, c.col_offset, rng);
  const Tensor x = RandomTensor(DType::kBF16, {c.n, c.k}, rng);
  auto amx = MakeBackend(CpuIsa::kAmx);
  ASSERT_NE(amx, nullptr);
  GuardedTensor out(DType::kF32, {c.n, c.m});
  const absl::Status s = amx->Linear(x, w, Tensor(), out.tensor());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(out.GuardsIntact());
  Reference ref = Multiply(x, Fp8AsBf16Weight(w), 0, c.n);
  for (double& b : ref.bound) b *= static_cast<double>(c.k + 2) / std::max<int64_t>(c.k - 1, 1);
  EXPECT_TRUE(WithinBound(out.tensor(), ref));
  // A token's output does not depend on its batch.
  for (int64_t t = 0; t < c.n; ++t) {
    Tensor one = *Tensor::Empty(DType::kF32, {1, c.m});
    ASSERT_TRUE(amx->Linear(*x.Slice(t, t + 1), w, Tensor(), one).ok());
    ASSERT_TRUE(TensorsEqual(one, *out.tensor().Slice(t, t + 1))) << "token " << t;
  }
}

const AmxFp8Case kAmxFp8Cases[] = {
    {"decode1", 1, 256, 40, 0, 0},
    {"k300_tail", 5, 300, 37, 0, 0},               // a partial last scale block and k tile
    {"col_offset32_rows47", 17, 200, 47, 96, 32},  // scale blocks start mid-tile-run
    {"k131_offsets", 33, 131, 20, 5, 64},          // rows straddle a 128-row scale block
    {"tokens64_col96", 64, 384, 70, 0, 96},
    {"tokens100", 100, 130, 33, 64, 0},
    {"col_offset77_k301", 3, 301, 9, 0, 77},     // scale blocks starting mid-tile
    {"one_row_k33", 1, 33, 1, 127, 127},         // one row, one value past a tile
    {"tokens40_two_chunks", 40, 256, 96, 0, 0},  // token blocks in pairs and alone
};

INSTANTIATE_TEST_SUITE_P(Cpu, AmxFp8LinearTest, ::testing::ValuesIn(kAmxFp8Cases),
                         [](const auto& info) { return info.param.name; });

// The byte table and two-step widening of the fp8 tiles, every byte under every kind of scale
// (ExpectEveryFp8ByteWidenedToBf16).
TEST(AmxFp8Widening, EveryByteUnderEveryKindOfScaleIsExact) {
  SKIP_WITHOUT_AMX();
  auto amx = MakeBackend(CpuIsa::kAmx);
  ASSERT_NE(amx, nullptr);
  ExpectEveryFp8ByteWidenedToBf16(*amx);
}

// Below amx_min_tokens the AMX family keeps the AVX512_BF16 streaming kernel; both paths stay
// within the bound. Their bits differ (which is what batch_invariant avoids: cpu_backend.h).
TEST(AmxLinearThreshold, StreamingBelowAndTilesAboveBothMatch) {
  SKIP_WITHOUT_AMX();
  const int64_t k = 129, m = 50;
  std::mt19937 rng(3);
  Tensor w = RandomTensor(DType::kBF16, {m, k}, rng, -0.5f, 0.5f);
  auto amx = MakeBackend(CpuIsa::kAmx, /*amx_min_tokens=*/8);
  ASSERT_NE(amx, nullptr);
  for (int64_t n : {1, 7, 8, 20}) {
    Tensor x = RandomTensor(DType::kBF16, {n, k}, rng);
    Tensor out = *Tensor::Empty(DType::kF32, {n, m});
    ASSERT_TRUE(amx->Linear(x, w, Tensor(), out).ok());
    EXPECT_TRUE(WithinBound(out, Multiply(x, w, 0, n))) << "n = " << n;
  }
}

// The AMX family's default (not batch-invariant): products with fewer than kDefaultAmxMinTokens
// tokens per weight run the AVX512_BF16 kernel, bit for bit, and the others the tiles, bit for
// bit as a batch-invariant AMX backend gives them; for bf16 and fp8 weights alike.
TEST(AmxDefaultThreshold, FewTokensOnTheStreamingKernelTheRestOnTiles) {
  SKIP_WITHOUT_AMX();
  ASSERT_EQ(kernels::cpu::kDefaultAmxMinTokens, 4);
  auto fast = MakeDefaultBackend(CpuIsa::kAmx);
  ASSERT_NE(fast, nullptr);
  auto tiles = MakeBackend(CpuIsa::kAmx, /*amx_min_tokens=*/1);
  auto streaming = MakeBackend(CpuIsa::kAvx512Bf16);
  ASSERT_NE(tiles, nullptr);
  ASSERT_NE(streaming, nullptr);
  const int64_t k = 300, m = 70;
  std::mt19937 rng(8);
  const Tensor weights[] = {RandomTensor(DType::kBF16, {m, k}, rng, -0.5f, 0.5f),
                            Fp8BlockWeight(m, k, 0, 0, rng)};
  for (const Tensor& w : weights) {
    for (int64_t n : {1, 3, 4, 9}) {
      const Tensor x = RandomTensor(DType::kBF16, {n, k}, rng);
      Tensor got = *Tensor::Empty(DType::kF32, {n, m});
      Tensor want = *Tensor::Empty(DType::kF32, {n, m});
      ASSERT_TRUE(fast->Linear(x, w, Tensor(), got).ok());
      CpuBackend& expected = n < 4 ? *streaming : *tiles;
      ASSERT_TRUE(expected.Linear(x, w, Tensor(), want).ok());
      EXPECT_TRUE(TensorsEqual(got, want))
          << DTypeName(w.dtype()) << ", n = " << n << ": not the " << expected.Name() << " bits";
    }
  }
}

}  // namespace
}  // namespace expertmesh::testing
