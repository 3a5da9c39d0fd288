// LaunchMoePermute against the CPU backend's MoePermute. The permutation is integer work and the
// rows are copies, so expert_offsets, sorted_slots and out_x must be bit-identical. Routing
// patterns: real top-k (distinct experts per token), one token, most experts idle, every token
// to one expert, repeated experts within a token (stability), the kernel's 1024 experts, more
// slots than the offsets kernel's chunk and than one grid of row blocks; odd hidden sizes
// (scalar row copies) and 16-byte rows; no tokens at all; expert ids out of range (flag, slot
// left out).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/moe_permute.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTest;
using testing::CudaTestWithParam;
using testing::DeviceFlags;
using testing::DeviceTensor;

enum class Routing { kTopK, kOneExpert, kRepeats, kFirstExperts };

struct PermuteCase {
  std::string name;
  int64_t tokens;
  int64_t top_k;
  int experts;
  int64_t hidden;
  DType dtype;
  Routing routing;
};

std::string Name(const ::testing::TestParamInfo<PermuteCase>& info) { return info.param.name; }

Tensor MakeIds(const PermuteCase& c, std::mt19937& rng) {
  Tensor ids = testing::HostEmpty(DType::kI32, {c.tokens, c.top_k});
  int32_t* p = ids.data<int32_t>();
  std::vector<int32_t> all(c.experts);
  std::iota(all.begin(), all.end(), 0);
  std::uniform_int_distribution<int32_t> any(0, c.experts - 1);
  for (int64_t t = 0; t < c.tokens; ++t) {
    int32_t* row = p + t * c.top_k;
    switch (c.routing) {
      case Routing::kTopK:  // distinct experts, as a router picks them
        std::shuffle(all.begin(), all.end(), rng);
        std::copy(all.begin(), all.begin() + c.top_k, row);
        break;
      case Routing::kOneExpert:
        std::fill(row, row + c.top_k, c.experts / 2);
        break;
      case Routing::kRepeats:
        for (int64_t j = 0; j < c.top_k; ++j) row[j] = any(rng) % 3;
        break;
      case Routing::kFirstExperts:  // only experts 0..top_k-1 get tokens
        std::iota(row, row + c.top_k, 0);
        std::shuffle(row, row + c.top_k, rng);
        break;
    }
  }
  return ids;
}

struct Outputs {
  Tensor out_x, offsets, slots;
  uint32_t flags = 0;
};

// Outputs start as 0x5a bytes: not -1, so the -1 written for left-out slots is checked too.
Outputs RunGpu(const PermuteCase& c, const Tensor& x, const Tensor& ids) {
  const int64_t m = c.tokens * c.top_k;
  DeviceTensor d_x = testing::ToDevice(x), d_ids = testing::ToDevice(ids);
  DeviceTensor out_x = testing::DevicePoisoned(c.dtype, {m, c.hidden});
  DeviceTensor offsets = testing::DevicePoisoned(DType::kI32, {c.experts + 1}, 0x5a);
  DeviceTensor slots = testing::DevicePoisoned(DType::kI32, {m}, 0x5a);
  DeviceFlags flags;
  MoePermuteArgs a;
  a.x = d_x.tensor.raw_data();
  a.dtype = c.dtype;
  a.topk_ids = d_ids.tensor.data<int32_t>();
  a.num_tokens = c.tokens;
  a.top_k = c.top_k;
  a.hidden = c.hidden;
  a.num_experts = c.experts;
  a.out_x = out_x.tensor.raw_data();
  a.expert_offsets = offsets.tensor.data<int32_t>();
  a.sorted_slots = slots.tensor.data<int32_t>();
  a.error_flags = flags.get();
  EXPECT_EQ(LaunchMoePermute(a, nullptr), cudaSuccess);
  Outputs o;
  o.flags = flags.Read();
  o.out_x = testing::ToHost(out_x.tensor);
  o.offsets = testing::ToHost(offsets.tensor);
  o.slots = testing::ToHost(slots.tensor);
  return o;
}

class MoePermuteGpuTest : public CudaTestWithParam<PermuteCase> {};

TEST_P(MoePermuteGpuTest, BitIdenticalToCpu) {
  const PermuteCase& c = GetParam();
  const int64_t m = c.tokens * c.top_k;
  std::mt19937 rng(static_cast<uint32_t>(m + c.experts));
  const Tensor x = testing::RandomTensor(c.dtype, {c.tokens, c.hidden}, rng);
  const Tensor ids = MakeIds(c, rng);
  Outputs want;
  want.out_x = testing::HostEmpty(c.dtype, {m, c.hidden});
  want.offsets = testing::HostEmpty(DType::kI32, {c.experts + 1});
  want.slots = testing::HostEmpty(DType::kI32, {m});
  auto cpu = testing::CpuReference();
  ASSERT_TRUE(cpu->MoePermute(x, ids, c.experts, want.out_x, want.offsets, want.slots).ok());
  const Outputs got = RunGpu(c, x, ids);
  EXPECT_EQ(got.flags, 0u);
  EXPECT_TRUE(testing::BitEqual(got.offsets, want.offsets)) << "expert_offsets";
  EXPECT_TRUE(testing::BitEqual(got.slots, want.slots)) << "sorted_slots";
  EXPECT_TRUE(testing::BitEqual(got.out_x, want.out_x)) << "out_x";
}

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;

INSTANTIATE_TEST_SUITE_P(
    Routings, MoePermuteGpuTest,
    ::testing::Values(
        PermuteCase{"one_token_top1", 1, 1, 8, 16, kF32, Routing::kTopK},
        PermuteCase{"one_token_deepseek", 1, 8, 256, 7168, kBF16, Routing::kTopK},
        PermuteCase{"qwen3_prefill", 37, 8, 128, 2048, kBF16, Routing::kTopK},
        PermuteCase{"mostly_idle_experts", 3, 8, 256, 64, kBF16, Routing::kTopK},
        PermuteCase{"all_to_one_expert", 100, 1, 64, 64, kBF16, Routing::kOneExpert},
        PermuteCase{"all_to_one_expert_top2", 300, 2, 8, 24, kF32, Routing::kOneExpert},
        PermuteCase{"repeats_within_token", 50, 6, 16, 12, kF32, Routing::kRepeats},
        PermuteCase{"first_experts_only", 70, 4, 1024, 32, kBF16, Routing::kFirstExperts},
        PermuteCase{"max_experts", 50, 8, 1024, 128, kBF16, Routing::kTopK},
        PermuteCase{"odd_hidden_bf16", 9, 2, 8, 7, kBF16, Routing::kTopK},
        PermuteCase{"odd_hidden_f32", 9, 2, 8, 5, kF32, Routing::kTopK},
        PermuteCase{"big_prefill", 4096, 8, 256, 64, kBF16, Routing::kTopK},
        // More rows than one grid's 65535 blocks.
        PermuteCase{"many_rows", 10000, 8, 64, 8, kBF16, Routing::kTopK}),
    Name);

class MoePermuteEdgeTest : public CudaTest {};

// No tokens: every offset is 0 (the offsets kernel still runs), nothing else is touched.
TEST_F(MoePermuteEdgeTest, NoTokensGivesZeroOffsets) {
  const PermuteCase c{"empty", 0, 8, 32, 16, kBF16, Routing::kTopK};
  const Tensor x = testing::HostEmpty(kBF16, {0, c.hidden});
  const Tensor ids = testing::HostEmpty(DType::kI32, {0, c.top_k});
  const Outputs got = RunGpu(c, x, ids);
  EXPECT_EQ(got.flags, 0u);
  for (int e = 0; e <= c.experts; ++e) EXPECT_EQ(got.offsets.data<int32_t>()[e], 0) << e;
}

// Expert ids outside [0, E) set kErrorMoeExpertId and are left out: the valid slots keep their
// stable order, offsets[E] counts only them, the trailing sorted_slots are -1.
TEST_F(MoePermuteEdgeTest, OutOfRangeExpertsAreFlaggedAndLeftOut) {
  const PermuteCase c{"bad_ids", 20, 4, 16, 8, kF32, Routing::kTopK};
  std::mt19937 rng(9);
  const Tensor x = testing::RandomTensor(kF32, {c.tokens, c.hidden}, rng);
  Tensor ids = MakeIds(c, rng);
  ids.data<int32_t>()[5] = -1;
  ids.data<int32_t>()[42] = c.experts;
  ids.data<int32_t>()[79] = c.experts + 1000;
  const int64_t m = c.tokens * c.top_k;
  // The expected result: a stable counting sort of the valid slots.
  std::vector<int32_t> offsets(c.experts + 1, 0), slots;
  for (int64_t s = 0; s < m; ++s) {
    const int32_t e = ids.data<int32_t>()[s];
    if (e >= 0 && e < c.experts) ++offsets[e + 1];
  }
  for (int e = 0; e < c.experts; ++e) offsets[e + 1] += offsets[e];
  for (int e = 0; e < c.experts; ++e) {
    for (int64_t s = 0; s < m; ++s) {
      if (ids.data<int32_t>()[s] == e) slots.push_back(static_cast<int32_t>(s));
    }
  }
  ASSERT_EQ(static_cast<int64_t>(slots.size()), m - 3);
  const Outputs got = RunGpu(c, x, ids);
  EXPECT_EQ(got.flags, static_cast<uint32_t>(kErrorMoeExpertId));
  for (int e = 0; e <= c.experts; ++e) EXPECT_EQ(got.offsets.data<int32_t>()[e], offsets[e]) << e;
  for (int64_t r = 0; r < m; ++r) {
    const int32_t want = r < m - 3 ? slots[r] : -1;
    EXPECT_EQ(got.slots.data<int32_t>()[r], want) << "row " << r;
  }
  for (int64_t r = 0; r < m - 3; ++r) {
    for (int64_t i = 0; i < c.hidden; ++i) {
      EXPECT_EQ(got.out_x.data<float>()[r * c.hidden + i],
                x.data<float>()[(slots[r] / c.top_k) * c.hidden + i]);
    }
  }
}

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(MoePermuteLaunchTest, UnsupportedArgumentsAreInvalidValue) {
  MoePermuteArgs a;
  a.num_experts = kMoePermuteMaxExperts + 1;
  EXPECT_EQ(LaunchMoePermute(a, nullptr), cudaErrorInvalidValue);
  a.num_experts = 8;
  a.dtype = DType::kF16;
  EXPECT_EQ(LaunchMoePermute(a, nullptr), cudaErrorInvalidValue);
  a.dtype = DType::kBF16;
  a.num_tokens = int64_t{1} << 28;
  a.top_k = 8;  // 2^31 slots
  EXPECT_EQ(LaunchMoePermute(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
