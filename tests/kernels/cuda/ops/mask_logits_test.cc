// LaunchMaskLogits against the CPU backend's MaskLogits, bit for bit (only -inf is written):
// random words with a partial last word, whole-word runs, rows without a mask, a vocabulary of
// DeepSeek's size, and enough words that the grid-stride loop wraps. Without a GPU every case
// skips visibly; the launcher's argument checks run everywhere.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/ops/mask_logits.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTestWithParam;
using testing::DeviceTensor;

struct MaskCase {
  int64_t rows;
  int64_t vocab;
  std::vector<int32_t> masked_rows;
  bool runs;  // whole words of 0 / ~0 between mixed ones, else uniformly random words
};

std::string Name(const ::testing::TestParamInfo<MaskCase>& info) {
  const MaskCase& c = info.param;
  return std::to_string(c.rows) + "x" + std::to_string(c.vocab) + "_m" +
         std::to_string(c.masked_rows.size()) + (c.runs ? "_runs" : "_random");
}

void PrintTo(const MaskCase& c, std::ostream* os) {
  *os << c.rows << "x" << c.vocab << ", " << c.masked_rows.size() << " masks";
}

class MaskLogitsGpuTest : public CudaTestWithParam<MaskCase> {};

TEST_P(MaskLogitsGpuTest, MatchesCpu) {
  const MaskCase& c = GetParam();
  const int64_t words = (c.vocab + 31) / 32;
  const int64_t m = static_cast<int64_t>(c.masked_rows.size());
  std::mt19937 rng(static_cast<uint32_t>(c.vocab + 17 * c.rows));
  const Tensor logits = testing::RandomTensor(DType::kF32, {c.rows, c.vocab}, rng, -8.0f, 8.0f);
  Tensor masks = testing::HostEmpty(DType::kI32, {m, words});
  uint32_t* bits = reinterpret_cast<uint32_t*>(masks.data<int32_t>());
  for (int64_t i = 0; i < m * words; ++i) {
    bits[i] = !c.runs ? static_cast<uint32_t>(rng())
                      : (i % 3 == 0 ? 0u : (i % 3 == 1 ? ~0u : static_cast<uint32_t>(rng())));
  }
  Tensor want = testing::Clone(logits);
  auto cpu = testing::CpuReference();
  ASSERT_TRUE(cpu->MaskLogits(masks, c.masked_rows, want).ok());

  DeviceTensor d_logits = testing::ToDevice(logits);
  DeviceTensor d_masks = testing::ToDevice(masks);
  auto rows_host = Tensor::Empty(DType::kI32, {m});
  ASSERT_TRUE(rows_host.ok());
  if (m > 0) std::memcpy(rows_host->raw_data(), c.masked_rows.data(), m * sizeof(int32_t));
  DeviceTensor d_rows = testing::ToDevice(*rows_host);
  MaskLogitsArgs a;
  a.logits = d_logits.tensor.data<float>();
  a.vocab = c.vocab;
  a.masks = reinterpret_cast<const uint32_t*>(d_masks.tensor.data<int32_t>());
  a.rows = d_rows.tensor.data<int32_t>();
  a.num_masks = m;
  ASSERT_EQ(LaunchMaskLogits(a, nullptr), cudaSuccess);
  const Tensor got = testing::ToHost(d_logits.tensor);
  ASSERT_EQ(std::memcmp(got.raw_data(), want.raw_data(), want.nbytes()), 0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MaskLogitsGpuTest,
                         ::testing::Values(MaskCase{1, 1, {0}, false},
                                           MaskCase{3, 70, {2, 0}, false},
                                           MaskCase{4, 1000, {0, 1, 2, 3}, true},
                                           MaskCase{8, 129280, {5, 1}, true},
                                           MaskCase{64, 151936, {63, 0, 31, 7}, false},
                                           MaskCase{200, 32000, std::vector<int32_t>{}, false}),
                         Name);

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(MaskLogitsLaunchTest, MissingPointersAreInvalidValue) {
  MaskLogitsArgs a;
  EXPECT_EQ(LaunchMaskLogits(a, nullptr), cudaSuccess);  // nothing to mask
  a.vocab = 64;
  a.num_masks = 1;
  EXPECT_EQ(LaunchMaskLogits(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
