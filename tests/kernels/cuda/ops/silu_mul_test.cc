// LaunchSiluMul against the CPU backend's SiluMul.
// Tolerance: f32 |gpu - cpu| <= 1e-6 |cpu| + 1e-30 (CUDA's expf is within 2 ulps of the host's
// exp, the division is correctly rounded on both sides); bf16 2 ulps (silu is rounded to bf16
// before the multiply, as HF does, so an ulp of difference in expf can move it across a rounding
// boundary, and the product is rounded again). Shapes: 1x1, odd widths, Qwen/DeepSeek expert and
// dense widths, and enough elements that the grid-stride loop wraps; gates up to |30|, where
// exp(-g) overflows or silu underflows toward -0.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <random>
#include <string>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/ops/silu_mul.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTestWithParam;
using testing::DeviceTensor;

struct SiluCase {
  int64_t tokens;
  int64_t inter;
  DType dtype;
  float range;  // gate and up uniform in [-range, range)
};

std::string Name(const ::testing::TestParamInfo<SiluCase>& info) {
  const SiluCase& c = info.param;
  return std::to_string(c.tokens) + "x" + std::to_string(c.inter) + "_" +
         testing::DTypeShort(c.dtype) + "_r" + std::to_string(static_cast<int>(c.range));
}

class SiluMulGpuTest : public CudaTestWithParam<SiluCase> {};

TEST_P(SiluMulGpuTest, MatchesCpu) {
  const SiluCase& c = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(c.tokens * 13 + c.inter));
  const Tensor gate_up =
      testing::RandomTensor(c.dtype, {c.tokens, 2 * c.inter}, rng, -c.range, c.range);
  Tensor want = testing::HostEmpty(c.dtype, {c.tokens, c.inter});
  auto cpu = testing::CpuReference();
  ASSERT_TRUE(cpu->SiluMul(gate_up, want).ok());

  DeviceTensor d_in = testing::ToDevice(gate_up);
  DeviceTensor d_out = testing::DevicePoisoned(c.dtype, {c.tokens, c.inter});
  SiluMulArgs a;
  a.gate_up = d_in.tensor.raw_data();
  a.out = d_out.tensor.raw_data();
  a.dtype = c.dtype;
  a.num_tokens = c.tokens;
  a.inter = c.inter;
  ASSERT_EQ(LaunchSiluMul(a, nullptr), cudaSuccess);
  const testing::Tolerance tol =
      c.dtype == DType::kF32 ? testing::Tolerance{1e-6, 1e-30, 0} : testing::Tolerance{0, 0, 2};
  EXPECT_TRUE(testing::Close(testing::ToHost(d_out.tensor), want, tol));
}

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;

INSTANTIATE_TEST_SUITE_P(
    Shapes, SiluMulGpuTest,
    ::testing::Values(SiluCase{1, 1, kF32, 4.0f}, SiluCase{1, 1, kBF16, 4.0f},
                      SiluCase{3, 7, kF32, 8.0f}, SiluCase{3, 7, kBF16, 8.0f},
                      SiluCase{33, 768, kBF16, 6.0f}, SiluCase{17, 1408, kF32, 6.0f},
                      SiluCase{1, 18432, kBF16, 6.0f}, SiluCase{5, 2048, kF32, 30.0f},
                      SiluCase{5, 2048, kBF16, 30.0f}, SiluCase{4096, 768, kBF16, 5.0f}),
    Name);

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(SiluMulLaunchTest, UnsupportedDtypeIsInvalidValue) {
  SiluMulArgs a;
  a.dtype = DType::kF16;
  EXPECT_EQ(LaunchSiluMul(a, nullptr), cudaErrorInvalidValue);
  a.num_tokens = 2;
  a.inter = 4;
  EXPECT_EQ(LaunchSiluMul(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
