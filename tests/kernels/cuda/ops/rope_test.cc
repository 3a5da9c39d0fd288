// LaunchRope against the CPU backend's Rope, on cos/sin tables from BuildRopeCache (default,
// linear, llama3 and YaRN scaling; YaRN's attention factor is folded into the table).
// Tolerance: f32 |gpu - cpu| <= 1e-6 + 1e-6 |cpu| (both sides round each product separately,
// so they normally agree bit for bit); bf16 one ulp (for a value whose fp32 result sits on a
// rounding boundary). Covers the three pairing styles, partial rotary slices at an offset
// (DeepSeek's absorbed MLA q and latent: rope dims after 512 latent dims), q without k, mixed q
// and k dtypes, half-width 1 and 1024, heads spread over several chunks of the block, more
// tokens than one grid, and positions outside the table (error flag, token left unchanged).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <random>
#include <string>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/rope.h"
#include "kernels/rope_cache.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::RopeScaling;
using kernels::RopeScalingType;
using kernels::RopeStyle;
using kernels::Tensor;
using testing::CudaTest;
using testing::CudaTestWithParam;
using testing::DeviceFlags;
using testing::DeviceTensor;

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;

struct RopeCase {
  std::string name;
  int64_t tokens;
  int64_t q_heads, q_head_dim;
  int64_t k_heads, k_head_dim;  // k_heads 0: q only
  int rotary_dim, rotary_offset;
  RopeStyle style;
  DType q_dtype, k_dtype;
  RopeScaling scaling;
  int64_t max_positions;
};

std::string Name(const ::testing::TestParamInfo<RopeCase>& info) { return info.param.name; }

RopeScaling Default(double theta) {
  RopeScaling s;
  s.theta = theta;
  return s;
}

RopeScaling Linear(double factor) {
  RopeScaling s;
  s.type = RopeScalingType::kLinear;
  s.factor = factor;
  return s;
}

RopeScaling Llama3() {  // Llama 3.1
  RopeScaling s;
  s.type = RopeScalingType::kLlama3;
  s.theta = 500000.0;
  s.factor = 8.0;
  s.low_freq_factor = 1.0;
  s.high_freq_factor = 4.0;
  s.original_max_position_embeddings = 8192;
  return s;
}

RopeScaling DeepseekYarn() {  // DeepSeek-V3's rope_scaling
  RopeScaling s;
  s.type = RopeScalingType::kYarn;
  s.theta = 10000.0;
  s.factor = 40.0;
  s.beta_fast = 32.0;
  s.beta_slow = 1.0;
  s.mscale = 1.0;
  s.mscale_all_dim = 1.0;
  s.original_max_position_embeddings = 4096;
  return s;
}

RopeScaling QwenYarn() {  // Qwen with yarn, factor 4 over 32k; attention factor from mscale
  RopeScaling s;
  s.type = RopeScalingType::kYarn;
  s.theta = 1000000.0;
  s.factor = 4.0;
  s.original_max_position_embeddings = 32768;
  return s;
}

struct Inputs {
  Tensor cos_sin, positions, q, k;
};

Inputs Build(const RopeCase& c, uint32_t seed) {
  Inputs in;
  auto table = kernels::BuildRopeCache(c.scaling, c.rotary_dim, c.max_positions);
  EXPECT_TRUE(table.ok()) << table.status();
  in.cos_sin = *table;
  std::mt19937 rng(seed);
  in.positions = testing::HostEmpty(DType::kI32, {c.tokens});
  std::uniform_int_distribution<int32_t> pos(0, static_cast<int32_t>(c.max_positions - 1));
  for (int64_t t = 0; t < c.tokens; ++t) in.positions.data<int32_t>()[t] = pos(rng);
  in.positions.data<int32_t>()[0] = static_cast<int32_t>(c.max_positions - 1);
  if (c.tokens > 1) in.positions.data<int32_t>()[1] = 0;
  in.q = testing::RandomTensor(c.q_dtype, {c.tokens, c.q_heads, c.q_head_dim}, rng, -2.0f, 2.0f);
  if (c.k_heads > 0) {
    in.k = testing::RandomTensor(c.k_dtype, {c.tokens, c.k_heads, c.k_head_dim}, rng, -2.0f, 2.0f);
  }
  return in;
}

struct GpuRun {
  Tensor q, k;
  uint32_t flags = 0;
};

GpuRun RunGpu(const RopeCase& c, const Inputs& in) {
  DeviceTensor cs = testing::ToDevice(in.cos_sin), pos = testing::ToDevice(in.positions);
  DeviceTensor q = testing::ToDevice(in.q), k;
  if (in.k.defined()) k = testing::ToDevice(in.k);
  DeviceFlags flags;
  RopeArgs a;
  a.cos_sin = cs.tensor.data<float>();
  a.max_positions = c.max_positions;
  a.positions = pos.tensor.data<int32_t>();
  a.num_tokens = c.tokens;
  a.style = static_cast<RopeStyleCode>(c.style);
  a.rotary_dim = c.rotary_dim;
  a.rotary_offset = c.rotary_offset;
  a.q = q.tensor.raw_data();
  a.q_dtype = c.q_dtype;
  a.q_heads = c.q_heads;
  a.q_head_dim = c.q_head_dim;
  if (in.k.defined()) {
    a.k = k.tensor.raw_data();
    a.k_dtype = c.k_dtype;
    a.k_heads = c.k_heads;
    a.k_head_dim = c.k_head_dim;
  }
  a.error_flags = flags.get();
  EXPECT_EQ(LaunchRope(a, nullptr), cudaSuccess);
  GpuRun r;
  r.flags = flags.Read();
  r.q = testing::ToHost(q.tensor);
  if (in.k.defined()) r.k = testing::ToHost(k.tensor);
  return r;
}

testing::Tolerance TolFor(DType d) {
  return d == kF32 ? testing::Tolerance{1e-6, 1e-6, 0} : testing::Tolerance{0, 0, 1};
}

class RopeGpuTest : public CudaTestWithParam<RopeCase> {};

TEST_P(RopeGpuTest, MatchesCpu) {
  const RopeCase& c = GetParam();
  const Inputs in = Build(c, 17u + static_cast<uint32_t>(c.name.size()));
  Tensor want_q = testing::Clone(in.q), want_k = in.k.defined() ? testing::Clone(in.k) : Tensor();
  auto cpu = testing::CpuReference();
  const kernels::RopeParams params{c.style, c.rotary_dim, c.rotary_offset};
  ASSERT_TRUE(cpu->Rope(in.cos_sin, in.positions, params, want_q, want_k).ok());
  const GpuRun r = RunGpu(c, in);
  EXPECT_EQ(r.flags, 0u);
  EXPECT_TRUE(testing::Close(r.q, want_q, TolFor(c.q_dtype))) << "q";
  if (in.k.defined()) {
    EXPECT_TRUE(testing::Close(r.k, want_k, TolFor(c.k_dtype))) << "k";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RopeGpuTest,
    ::testing::Values(
        RopeCase{"one_token_f32", 1, 4, 64, 1, 64, 64, 0, RopeStyle::kNeox, kF32, kF32,
                 Default(10000.0), 32},
        // Llama 3.1 8B: 32 q heads, 8 kv heads, several chunks of whole heads per block.
        RopeCase{"llama3_bf16", 7, 32, 128, 8, 128, 128, 0, RopeStyle::kNeox, kBF16, kBF16,
                 Llama3(), 16384},
        // Qwen2-style with YaRN; q bf16 and k f32 (each tensor keeps its dtype).
        RopeCase{"qwen_yarn_mixed_dtypes", 5, 28, 128, 4, 128, 128, 0, RopeStyle::kNeox, kBF16,
                 kF32, QwenYarn(), 40000},
        // Partial rotary (GPT-NeoX / Phi): the first 64 of 128 dims.
        RopeCase{"partial_rotary_f32", 5, 8, 128, 2, 128, 64, 0, RopeStyle::kNeox, kF32, kF32,
                 Default(10000.0), 2048},
        // GPT-J interleaved pairs.
        RopeCase{"gptj_interleaved_f32", 9, 16, 256, 16, 256, 64, 0, RopeStyle::kInterleaved, kF32,
                 kF32, Default(10000.0), 2048},
        RopeCase{"interleaved_bf16", 4, 3, 64, 1, 64, 64, 0, RopeStyle::kInterleaved, kBF16, kBF16,
                 Linear(4.0), 4096},
        // DeepSeek-V3 absorbed MLA: q [n, heads, 512 + 64], latent [n, 1, 576], rope after the
        // 512 latent dims, de-interleaved, YaRN factor 40 past the original 4096 positions.
        RopeCase{"deepseek_mla_yarn_bf16", 6, 16, 576, 1, 576, 64, 512,
                 RopeStyle::kDeinterleaveNeox, kBF16, kBF16, DeepseekYarn(), 8192},
        RopeCase{"deepseek_mla_yarn_f32", 3, 128, 576, 1, 576, 64, 512,
                 RopeStyle::kDeinterleaveNeox, kF32, kF32, DeepseekYarn(), 8192},
        // DeepSeek without absorption: q_pe at 128 in a 192-dim head, k_pe [n, 1, 64].
        RopeCase{"deepseek_qpe_offset_bf16", 4, 16, 192, 1, 192, 64, 128,
                 RopeStyle::kDeinterleaveNeox, kBF16, kBF16, DeepseekYarn(), 8192},
        // Odd shapes: half width 1 and 2 at odd offsets, odd head counts and dims.
        RopeCase{"half1_odd_offset_f32", 3, 3, 6, 1, 6, 2, 3, RopeStyle::kInterleaved, kF32, kF32,
                 Default(10000.0), 16},
        RopeCase{"deinterleave_odd_f32", 3, 5, 7, 3, 9, 4, 1, RopeStyle::kDeinterleaveNeox, kF32,
                 kF32, Default(500.0), 64},
        RopeCase{"neox_odd_bf16", 5, 7, 10, 1, 6, 4, 2, RopeStyle::kNeox, kBF16, kBF16,
                 Default(10000.0), 100},
        // Half width 1024 (a 1024-thread block per head), q only.
        RopeCase{"wide_q_only_bf16", 2, 1, 2048, 0, 0, 2048, 0, RopeStyle::kNeox, kBF16, kBF16,
                 Default(10000.0), 64},
        RopeCase{"q_only_f32", 3, 8, 64, 0, 0, 32, 16, RopeStyle::kNeox, kF32, kF32,
                 Default(10000.0), 128},
        // More tokens than the 65535 blocks of one grid.
        RopeCase{"many_tokens_bf16", 70000, 2, 8, 1, 8, 8, 0, RopeStyle::kNeox, kBF16, kBF16,
                 Default(10000.0), 100000}),
    Name);

// Positions outside [0, max_positions) set kErrorRopePosition and leave that token's q and k
// as they were; the other tokens rotate as usual.
class RopeErrorTest : public CudaTest {};

TEST_F(RopeErrorTest, PositionOutsideTableFlagsAndSkipsToken) {
  const RopeCase c{"bad_positions",  6, 4, 64, 2, 64, 64, 0, RopeStyle::kNeox, kBF16, kBF16,
                   Default(10000.0), 50};
  Inputs in = Build(c, 3);
  in.positions.data<int32_t>()[2] = -1;
  in.positions.data<int32_t>()[4] = 50;
  Inputs fixed = in;
  fixed.positions = testing::Clone(in.positions);
  fixed.positions.data<int32_t>()[2] = fixed.positions.data<int32_t>()[4] = 0;
  Tensor want_q = testing::Clone(in.q), want_k = testing::Clone(in.k);
  auto cpu = testing::CpuReference();
  ASSERT_TRUE(
      cpu->Rope(fixed.cos_sin, fixed.positions, {c.style, c.rotary_dim, 0}, want_q, want_k).ok());
  // Tokens 2 and 4 keep their inputs.
  for (int64_t t : {2, 4}) {
    for (int64_t i = 0; i < c.q_heads * c.q_head_dim; ++i) {
      const int64_t e = t * c.q_heads * c.q_head_dim + i;
      want_q.data<uint16_t>()[e] = in.q.data<uint16_t>()[e];
    }
    for (int64_t i = 0; i < c.k_heads * c.k_head_dim; ++i) {
      const int64_t e = t * c.k_heads * c.k_head_dim + i;
      want_k.data<uint16_t>()[e] = in.k.data<uint16_t>()[e];
    }
  }
  const GpuRun r = RunGpu(c, in);
  EXPECT_EQ(r.flags, static_cast<uint32_t>(kErrorRopePosition));
  EXPECT_TRUE(testing::Close(r.q, want_q, TolFor(kBF16)));
  EXPECT_TRUE(testing::Close(r.k, want_k, TolFor(kBF16)));
}

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(RopeLaunchTest, BadRotaryDimOrDtypeIsInvalidValue) {
  RopeArgs a;
  a.num_tokens = 1;
  a.rotary_dim = 3;
  EXPECT_EQ(LaunchRope(a, nullptr), cudaErrorInvalidValue);
  a.rotary_dim = 4096;  // half width above 1024
  EXPECT_EQ(LaunchRope(a, nullptr), cudaErrorInvalidValue);
  a.rotary_dim = 64;
  a.q_dtype = DType::kF16;
  EXPECT_EQ(LaunchRope(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
