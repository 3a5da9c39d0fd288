// LaunchRmsNorm against the CPU backend's RmsNorm, with and without the fused residual add.
// Tolerances:
//   residual (x + residual rounded once to its dtype, the same float add on both sides):
//     bit-identical;
//   out, f32: |gpu - cpu| <= 1e-5 |cpu| + 1e-6. The GPU sums squares in fp32 (a few terms per
//     thread, then a tree), the CPU in double: the mean differs by ~1e-6 relative at most;
//   out, bf16: 3 bf16 ulps + 1e-6. The normalised value is rounded to bf16 before the weight
//     multiply (HF), so a 1e-6 difference can move it across a rounding boundary (1 ulp of it,
//     up to 2 ulps of the product once scaled by a weight in [0.5, 1.5)), and the product is
//     rounded again (1 more).
// Shapes cover both kernels (one warp per row up to dim 512, one block per row above), their
// 4-wide vector and scalar paths (odd dims, a misaligned x), per-head q/k norms (many short
// rows), DeepSeek's 7168 hidden, out aliasing x, and more rows than one grid covers.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <random>
#include <string>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/ops/rms_norm.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTestWithParam;
using testing::DeviceTensor;

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;
constexpr DType kNone = DType::kI32;  // marks "no residual" in a case

struct RmsNormCase {
  int64_t rows;
  int64_t dim;
  DType dtype;
  DType residual_dtype;  // kNone: no residual
  DType weight_dtype;
  bool out_aliases_x = false;
  size_t x_offset_bytes = 0;  // nonzero: a misaligned x (scalar path)
};

std::string Name(const ::testing::TestParamInfo<RmsNormCase>& info) {
  const RmsNormCase& c = info.param;
  std::string name = std::to_string(c.rows) + "x" + std::to_string(c.dim) + "_" +
                     testing::DTypeShort(c.dtype) + "_w" + testing::DTypeShort(c.weight_dtype);
  if (c.residual_dtype != kNone) name += "_res" + testing::DTypeShort(c.residual_dtype);
  if (c.out_aliases_x) name += "_inplace";
  if (c.x_offset_bytes) name += "_misaligned";
  return name;
}

class RmsNormGpuTest : public CudaTestWithParam<RmsNormCase> {};

TEST_P(RmsNormGpuTest, MatchesCpu) {
  const RmsNormCase& c = GetParam();
  const bool has_residual = c.residual_dtype != kNone;
  const float eps = 1e-6f;
  std::mt19937 rng(static_cast<uint32_t>(c.rows * 7 + c.dim));
  const Tensor x = testing::RandomTensor(c.dtype, {c.rows, c.dim}, rng, -2.0f, 2.0f);
  const Tensor weight = testing::RandomTensor(c.weight_dtype, {c.dim}, rng, 0.5f, 1.5f);
  Tensor residual;
  if (has_residual) residual = testing::RandomTensor(c.residual_dtype, {c.rows, c.dim}, rng);

  auto cpu = testing::CpuReference();
  Tensor want = testing::HostEmpty(c.dtype, {c.rows, c.dim});
  Tensor want_residual = has_residual ? testing::Clone(residual) : Tensor();
  ASSERT_TRUE(cpu->RmsNorm(x, has_residual ? &want_residual : nullptr, weight, eps, want).ok());

  testing::OffsetDeviceTensor d_x = testing::ToDeviceAt(x, c.x_offset_bytes);
  DeviceTensor d_w = testing::ToDevice(weight);
  DeviceTensor d_res;
  if (has_residual) d_res = testing::ToDevice(residual);
  DeviceTensor d_out = testing::DevicePoisoned(c.dtype, {c.rows, c.dim});
  RmsNormArgs a;
  a.x = d_x.data;
  a.out = c.out_aliases_x ? d_x.data : d_out.tensor.raw_data();
  a.dtype = c.dtype;
  a.residual = has_residual ? d_res.tensor.raw_data() : nullptr;
  a.residual_dtype = has_residual ? c.residual_dtype : kBF16;
  a.weight = d_w.tensor.raw_data();
  a.weight_dtype = c.weight_dtype;
  a.rows = c.rows;
  a.dim = c.dim;
  a.eps = eps;
  ASSERT_EQ(LaunchRmsNorm(a, nullptr), cudaSuccess);
  const Tensor got = c.out_aliases_x ? testing::HostCopyOf(d_x.data, c.dtype, {c.rows, c.dim})
                                     : testing::ToHost(d_out.tensor);
  const testing::Tolerance tol =
      c.dtype == kF32 ? testing::Tolerance{1e-5, 1e-6, 0} : testing::Tolerance{0, 1e-6, 3};
  EXPECT_TRUE(testing::Close(got, want, tol));
  if (has_residual) {
    EXPECT_TRUE(testing::BitEqual(testing::ToHost(d_res.tensor), want_residual));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RmsNormGpuTest,
    ::testing::Values(
        // One token, dim 1; odd dims (scalar path) in the warp kernel.
        RmsNormCase{1, 1, kF32, kNone, kF32}, RmsNormCase{1, 7, kBF16, kBF16, kBF16},
        RmsNormCase{3, 7, kF32, kF32, kBF16}, RmsNormCase{17, 511, kF32, kF32, kF32},
        // Per-head q/k norm: rows = tokens x heads, dim 128 (Qwen3), vector path.
        RmsNormCase{5 * 64, 128, kBF16, kNone, kBF16}, RmsNormCase{1 * 8, 128, kF32, kNone, kBF16},
        // DeepSeek's kv_a_layernorm (512, the largest warp-kernel dim) and q_a_layernorm (1536).
        RmsNormCase{9, 512, kBF16, kF32, kBF16}, RmsNormCase{9, 1536, kBF16, kNone, kBF16},
        // Block kernel: just above the warp limit (scalar), hidden sizes with residual.
        RmsNormCase{4, 513, kBF16, kBF16, kBF16}, RmsNormCase{2, 4096, kBF16, kBF16, kBF16},
        RmsNormCase{33, 2048, kF32, kBF16, kF32}, RmsNormCase{1, 7168, kF32, kF32, kBF16},
        RmsNormCase{3, 7168, kBF16, kF32, kBF16}, RmsNormCase{2, 5121, kBF16, kBF16, kF32},
        // out aliasing x, in both kernels.
        RmsNormCase{6, 256, kBF16, kBF16, kBF16, true},
        RmsNormCase{6, 2048, kF32, kNone, kF32, true},
        // Misaligned x: dims divisible by 4 on the scalar path.
        RmsNormCase{5, 256, kBF16, kBF16, kBF16, false, 2},
        RmsNormCase{5, 4096, kF32, kF32, kF32, false, 4},
        // More rows than one grid: warp kernel (8 rows per block) and block kernel.
        RmsNormCase{530000, 16, kBF16, kBF16, kBF16}, RmsNormCase{65600, 520, kBF16, kNone, kBF16}),
    Name);

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(RmsNormLaunchTest, UnsupportedDtypesAreInvalidValue) {
  RmsNormArgs a;
  a.rows = 1;
  a.dim = 8;
  a.dtype = DType::kF16;
  EXPECT_EQ(LaunchRmsNorm(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
