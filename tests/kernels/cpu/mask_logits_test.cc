// Backend::MaskLogits on the CPU backend against a naive bit-by-bit reference, compared bit for
// bit (the op only writes -inf): every bit set, none, random words with a partial last word,
// rows without a mask left untouched, and the argument checks; the AVX-512 path (where the CPU has
// it) through the backend and the portable one directly.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_mask.h"

namespace expertmesh::kernels::cpu {
namespace {

enum class Bits { kAll, kNone, kRandom, kSparse };

struct MaskCase {
  std::string name;
  int64_t rows;
  int64_t vocab;
  std::vector<int32_t> masked_rows;  // the rows that get a mask; the others keep their logits
  Bits bits;
};

void PrintTo(const MaskCase& c, std::ostream* os) { *os << c.name; }

class MaskLogitsTest : public ::testing::TestWithParam<MaskCase> {
 protected:
  void SetUp() override {
    CpuBackendOptions options;
    options.num_threads = 1;
    auto backend = CpuBackend::Create(options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }
  std::unique_ptr<CpuBackend> backend_;
};

TEST_P(MaskLogitsTest, MatchesBitByBitReference) {
  const MaskCase& c = GetParam();
  const int64_t words = (c.vocab + 31) / 32;
  const int64_t m = static_cast<int64_t>(c.masked_rows.size());
  std::mt19937 rng(static_cast<uint32_t>(c.vocab * 7 + c.rows));
  std::uniform_real_distribution<float> value(-5.0f, 5.0f);
  auto logits = Tensor::Empty(DType::kF32, {c.rows, c.vocab});
  ASSERT_TRUE(logits.ok());
  for (int64_t i = 0; i < c.rows * c.vocab; ++i) logits->data<float>()[i] = value(rng);
  auto masks = Tensor::Empty(DType::kI32, {m, words});
  ASSERT_TRUE(masks.ok());
  uint32_t* bits = reinterpret_cast<uint32_t*>(masks->data<int32_t>());
  for (int64_t i = 0; i < m * words; ++i) {
    switch (c.bits) {
      case Bits::kAll:
        bits[i] = ~uint32_t{0};
        break;
      case Bits::kNone:
        bits[i] = 0;
        break;
      case Bits::kRandom:
        bits[i] = static_cast<uint32_t>(rng());
        break;
      case Bits::kSparse:  // whole-word runs of 0 and ~0 between mixed words, as grammars give
        bits[i] = i % 3 == 0 ? 0u : (i % 3 == 1 ? ~uint32_t{0} : 1u << (i % 32));
        break;
    }
  }
  std::vector<float> want(logits->data<float>(), logits->data<float>() + c.rows * c.vocab);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t t = 0; t < c.vocab; ++t) {
      if (((bits[i * words + t / 32] >> (t % 32)) & 1u) == 0) {
        want[c.masked_rows[i] * c.vocab + t] = -std::numeric_limits<float>::infinity();
      }
    }
  }
  // The portable path (what a CPU without AVX-512 runs) on a copy, row by row.
  std::vector<float> portable(logits->data<float>(), logits->data<float>() + c.rows * c.vocab);
  for (int64_t i = 0; i < m; ++i) {
    MaskLogitsRowPortable(
        {bits + i * words, static_cast<size_t>(words)},
        {portable.data() + c.masked_rows[i] * c.vocab, static_cast<size_t>(c.vocab)});
  }
  ASSERT_EQ(std::memcmp(portable.data(), want.data(), want.size() * sizeof(float)), 0);
  ASSERT_TRUE(backend_->MaskLogits(*masks, c.masked_rows, *logits).ok());
  for (int64_t i = 0; i < c.rows * c.vocab; ++i) {
    ASSERT_EQ(std::memcmp(&want[i], logits->data<float>() + i, sizeof(float)), 0)
        << "row " << i / c.vocab << " token " << i % c.vocab << ": want " << want[i] << ", got "
        << logits->data<float>()[i];
  }
  if (c.bits == Bits::kNone && m > 0) {  // the reference itself must have masked something
    EXPECT_TRUE(std::isinf(logits->data<float>()[c.masked_rows[0] * c.vocab]));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MaskLogitsTest,
    ::testing::Values(MaskCase{"AllBits", 2, 64, {0, 1}, Bits::kAll},
                      MaskCase{"NoBits", 2, 64, {1, 0}, Bits::kNone},
                      MaskCase{"PartialLastWordRandom", 3, 70, {0, 1, 2}, Bits::kRandom},
                      MaskCase{"PartialLastWordNone", 1, 33, {0}, Bits::kNone},
                      MaskCase{"OneToken", 1, 1, {0}, Bits::kRandom},
                      MaskCase{"RowsWithoutMask", 5, 100, {3, 1}, Bits::kRandom},
                      MaskCase{"SparseWords", 4, 1000, {2, 0, 3}, Bits::kSparse},
                      MaskCase{"NoMaskedRows", 2, 40, {}, Bits::kNone}),
    [](const ::testing::TestParamInfo<MaskCase>& info) { return info.param.name; });

TEST(MaskLogitsArgsTest, RefusesBadRowsAndShapes) {
  auto backend = CpuBackend::Create({.num_threads = 1});
  ASSERT_TRUE(backend.ok());
  auto logits = Tensor::Zeros(DType::kF32, {2, 40});
  auto masks = Tensor::Zeros(DType::kI32, {1, 2});
  ASSERT_TRUE(logits.ok() && masks.ok());
  const std::vector<int32_t> outside = {2};
  absl::Status s = (*backend)->MaskLogits(*masks, outside, *logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("outside"), std::string::npos) << s;
  const std::vector<int32_t> negative = {-1};
  EXPECT_EQ((*backend)->MaskLogits(*masks, negative, *logits).code(),
            absl::StatusCode::kInvalidArgument);
  auto two_masks = Tensor::Zeros(DType::kI32, {2, 2});
  ASSERT_TRUE(two_masks.ok());
  const std::vector<int32_t> twice = {1, 1};
  s = (*backend)->MaskLogits(*two_masks, twice, *logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("twice"), std::string::npos) << s;
  auto short_masks = Tensor::Zeros(DType::kI32, {1, 1});  // 40 tokens need 2 words
  ASSERT_TRUE(short_masks.ok());
  const std::vector<int32_t> one = {0};
  EXPECT_EQ((*backend)->MaskLogits(*short_masks, one, *logits).code(),
            absl::StatusCode::kInvalidArgument);
  auto f32_masks = Tensor::Zeros(DType::kF32, {1, 2});
  ASSERT_TRUE(f32_masks.ok());
  EXPECT_EQ((*backend)->MaskLogits(*f32_masks, one, *logits).code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing was written by the refused calls.
  for (int64_t i = 0; i < 80; ++i) EXPECT_EQ(logits->data<float>()[i], 0.0f);
}

}  // namespace
}  // namespace expertmesh::kernels::cpu
