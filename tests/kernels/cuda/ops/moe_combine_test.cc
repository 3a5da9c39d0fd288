// LaunchMoeCombine against the CPU backend's MoeCombine, on sorted_slots from the CPU's
// MoePermute. Both sum the picks in ascending (expert id, j) order with products and sums rounded
// separately in fp32, so they differ only through the shared-expert gate (expf vs exp).
// Tolerance per element: |gpu - cpu| <= 1e-6 S, S = sum_j |w_j y_j| + |g shared| (the magnitude
// of the terms), plus one ulp of the output for bf16. Covers one token, top-1 to top-64,
// repeated experts within a token, shared experts with and without Qwen2-MoE's sigmoid gate
// ([n] and [n, 1]), every dtype mix of y, shared, gate and out, odd and DeepSeek hidden sizes,
// more tokens than one grid, and sorted_slots that are not a permutation (error flag).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/moe_combine.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTest;
using testing::CudaTestWithParam;
using testing::DeviceFlags;
using testing::DeviceTensor;

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;
constexpr DType kNone = DType::kI32;  // marks an absent shared expert or gate

struct CombineCase {
  std::string name;
  int64_t tokens, top_k;
  int experts;
  int64_t hidden;
  DType y_dtype, out_dtype;
  DType shared_dtype = kNone;
  DType gate_dtype = kNone;
  bool gate_2d = false;         // gate as [n, 1] instead of [n]
  bool repeat_experts = false;  // experts drawn with repetition within a token
};

std::string Name(const ::testing::TestParamInfo<CombineCase>& info) { return info.param.name; }

struct Inputs {
  Tensor y, slots, ids, weights, shared, gate;
};

Inputs Build(const CombineCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  const int64_t m = c.tokens * c.top_k;
  in.ids = testing::HostEmpty(DType::kI32, {c.tokens, c.top_k});
  std::vector<int32_t> all(c.experts);
  std::iota(all.begin(), all.end(), 0);
  std::uniform_int_distribution<int32_t> any(0, c.experts - 1);
  for (int64_t t = 0; t < c.tokens; ++t) {
    int32_t* row = in.ids.data<int32_t>() + t * c.top_k;
    if (c.repeat_experts) {
      for (int64_t j = 0; j < c.top_k; ++j) row[j] = any(rng);
    } else {
      std::shuffle(all.begin(), all.end(), rng);
      std::copy(all.begin(), all.begin() + c.top_k, row);
    }
  }
  in.weights = testing::RandomTensor(kF32, {c.tokens, c.top_k}, rng, 0.0f, 1.0f);
  in.y = testing::RandomTensor(c.y_dtype, {m, c.hidden}, rng, -2.0f, 2.0f);
  if (c.shared_dtype != kNone) {
    in.shared = testing::RandomTensor(c.shared_dtype, {c.tokens, c.hidden}, rng, -2.0f, 2.0f);
  }
  if (c.gate_dtype != kNone) {
    in.gate = c.gate_2d ? testing::RandomTensor(c.gate_dtype, {c.tokens, 1}, rng, -4.0f, 4.0f)
                        : testing::RandomTensor(c.gate_dtype, {c.tokens}, rng, -4.0f, 4.0f);
  }
  // sorted_slots as the CPU permute produces them (x only decides out_x, unused here).
  const Tensor x = testing::RandomTensor(kF32, {c.tokens, 1}, rng);
  Tensor out_x = testing::HostEmpty(kF32, {m, 1});
  Tensor offsets = testing::HostEmpty(DType::kI32, {c.experts + 1});
  in.slots = testing::HostEmpty(DType::kI32, {m});
  auto cpu = testing::CpuReference();
  EXPECT_TRUE(cpu->MoePermute(x, in.ids, c.experts, out_x, offsets, in.slots).ok());
  return in;
}

// S per output element (see the top of the file).
std::vector<double> TermMagnitudes(const CombineCase& c, const Inputs& in) {
  const int64_t m = c.tokens * c.top_k;
  std::vector<int64_t> row_of_slot(m);
  for (int64_t r = 0; r < m; ++r) row_of_slot[in.slots.data<int32_t>()[r]] = r;
  std::vector<double> s(c.tokens * c.hidden, 0.0);
  for (int64_t t = 0; t < c.tokens; ++t) {
    double g = 1.0;
    if (in.gate.defined()) g = 1.0 / (1.0 + std::exp(-testing::GetValue(in.gate, t)));
    for (int64_t i = 0; i < c.hidden; ++i) {
      double acc = 0.0;
      for (int64_t j = 0; j < c.top_k; ++j) {
        const double w = in.weights.data<float>()[t * c.top_k + j];
        acc += std::fabs(w * testing::GetValue(in.y, row_of_slot[t * c.top_k + j] * c.hidden + i));
      }
      if (in.shared.defined()) acc += std::fabs(g * testing::GetValue(in.shared, t * c.hidden + i));
      s[t * c.hidden + i] = acc;
    }
  }
  return s;
}

struct GpuRun {
  Tensor out;
  uint32_t flags = 0;
};

GpuRun RunGpu(const CombineCase& c, const Inputs& in) {
  const int64_t m = c.tokens * c.top_k;
  DeviceTensor y = testing::ToDevice(in.y), slots = testing::ToDevice(in.slots);
  DeviceTensor ids = testing::ToDevice(in.ids), weights = testing::ToDevice(in.weights);
  DeviceTensor shared, gate;
  if (in.shared.defined()) shared = testing::ToDevice(in.shared);
  if (in.gate.defined()) gate = testing::ToDevice(in.gate);
  DeviceTensor out = testing::DevicePoisoned(c.out_dtype, {c.tokens, c.hidden});
  DeviceTensor workspace = testing::DevicePoisoned(DType::kI32, {m});
  DeviceFlags flags;
  MoeCombineArgs a;
  a.y = y.tensor.raw_data();
  a.y_dtype = c.y_dtype;
  a.sorted_slots = slots.tensor.data<int32_t>();
  a.topk_ids = ids.tensor.data<int32_t>();
  a.topk_weights = weights.tensor.data<float>();
  if (in.shared.defined()) {
    a.shared = shared.tensor.raw_data();
    a.shared_dtype = c.shared_dtype;
  }
  if (in.gate.defined()) {
    a.shared_gate = gate.tensor.raw_data();
    a.shared_gate_dtype = c.gate_dtype;
  }
  a.out = out.tensor.raw_data();
  a.out_dtype = c.out_dtype;
  a.num_tokens = c.tokens;
  a.top_k = c.top_k;
  a.hidden = c.hidden;
  EXPECT_GE(workspace.tensor.nbytes(), MoeCombineWorkspaceBytes(m));
  a.workspace = workspace.tensor.raw_data();
  a.error_flags = flags.get();
  EXPECT_EQ(LaunchMoeCombine(a, nullptr), cudaSuccess);
  GpuRun r;
  r.flags = flags.Read();
  r.out = testing::ToHost(out.tensor);
  return r;
}

::testing::AssertionResult CloseToCpu(const CombineCase& c, const Inputs& in, const Tensor& got,
                                      const Tensor& want) {
  const std::vector<double> s = TermMagnitudes(c, in);
  const bool bf16 = c.out_dtype == kBF16;
  int64_t bad = 0;
  std::string first;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = testing::GetValue(got, i), w = testing::GetValue(want, i);
    const double tol =
        1e-6 * s[i] + (bf16 ? testing::Bf16Ulp(std::max(std::fabs(g), std::fabs(w))) : 0.0);
    if (!std::isfinite(g) || !(std::fabs(g - w) <= tol)) {
      if (bad++ == 0) {
        first = "[" + std::to_string(i) + "] got " + std::to_string(g) + " want " +
                std::to_string(w) + " tol " + std::to_string(tol);
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " elements off; first " << first;
}

class MoeCombineGpuTest : public CudaTestWithParam<CombineCase> {};

TEST_P(MoeCombineGpuTest, MatchesCpu) {
  const CombineCase& c = GetParam();
  const Inputs in = Build(c, 71u + static_cast<uint32_t>(c.name.size()));
  Tensor want = testing::HostEmpty(c.out_dtype, {c.tokens, c.hidden});
  auto cpu = testing::CpuReference();
  ASSERT_TRUE(cpu->MoeCombine(in.y, in.slots, in.ids, in.weights, in.shared, in.gate, want).ok());
  const GpuRun r = RunGpu(c, in);
  EXPECT_EQ(r.flags, 0u);
  EXPECT_TRUE(CloseToCpu(c, in, r.out, want));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MoeCombineGpuTest,
    ::testing::Values(
        CombineCase{"one_token_top1_f32", 1, 1, 8, 16, kF32, kF32},
        CombineCase{"deepseek_shared_bf16", 37, 8, 256, 2048, kBF16, kBF16, kBF16},
        CombineCase{"deepseek_hidden_7168", 2, 8, 256, 7168, kBF16, kBF16, kBF16},
        CombineCase{"qwen2_gated_shared", 5, 4, 60, 7, kBF16, kBF16, kBF16, kBF16, true},
        CombineCase{"f32_y_bf16_out", 9, 2, 8, 33, kF32, kBF16, kF32, kF32},
        CombineCase{"bf16_y_f32_out", 9, 2, 8, 33, kBF16, kF32, kBF16, kF32},
        CombineCase{"f32_shared_bf16_gate", 4, 3, 8, 20, kF32, kF32, kF32, kBF16, true},
        CombineCase{"bf16_shared_f32_y", 4, 3, 8, 20, kF32, kF32, kBF16},
        CombineCase{"repeated_experts", 20, 6, 4, 12, kF32, kF32, kNone, kNone, false, true},
        CombineCase{"top64", 3, 64, 128, 256, kBF16, kBF16},
        // More tokens than one grid's 65535 blocks.
        CombineCase{"many_tokens", 70000, 1, 8, 4, kBF16, kBF16, kBF16}),
    Name);

// sorted_slots that are not a permutation set kErrorMoeExpertId.
class MoeCombineErrorTest : public CudaTest {};

TEST_F(MoeCombineErrorTest, NonPermutationSlotsAreFlagged) {
  const CombineCase c{"bad_slots", 6, 2, 8, 16, kF32, kF32};
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    Inputs in = Build(c, 5);
    int32_t* s = in.slots.data<int32_t>();
    if (variant == 0) s[3] = s[4];                         // a slot listed twice
    if (variant == 1) s[7] = static_cast<int32_t>(6 * 2);  // a slot past the end
    if (variant == 2) s[0] = -1;                           // a left-out slot (bad permute)
    const GpuRun r = RunGpu(c, in);
    EXPECT_EQ(r.flags, static_cast<uint32_t>(kErrorMoeExpertId));
  }
}

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(MoeCombineLaunchTest, BadArgumentsAreInvalidValue) {
  MoeCombineArgs a;
  a.num_tokens = 2;
  a.top_k = 2;
  a.hidden = 8;
  a.y_dtype = DType::kF16;
  EXPECT_EQ(LaunchMoeCombine(a, nullptr), cudaErrorInvalidValue);
  a.y_dtype = DType::kBF16;
  a.workspace = nullptr;  // needed for m > 0
  EXPECT_EQ(LaunchMoeCombine(a, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(MoeCombineWorkspaceBytes(10), 10 * sizeof(int32_t));
}

}  // namespace
}  // namespace expertmesh::cuda
