// RoPE: the cos/sin tables (default, linear, YaRN, llama3) against double-precision versions of
// Hugging Face's formulas, and the three pairing styles against literal transcriptions of HF's
// rotate_half / apply_rotary_pos_emb_interleave.
#include <cmath>
#include <numbers>
#include <random>

#include "kernels/rope_cache.h"
#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

using kernels::RopeScaling;
using kernels::RopeScalingType;
using kernels::RopeStyle;

// HF's inverse frequencies, in double.
std::vector<double> ReferenceInvFreq(const RopeScaling& s, int dim) {
  std::vector<double> inv(dim / 2), pos(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    pos[i] = std::pow(s.theta, 2.0 * i / dim);
    inv[i] = 1.0 / pos[i];
  }
  if (s.type == RopeScalingType::kLinear) {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == RopeScalingType::kYarn) {
    auto corr = [&](double rot) {
      return dim * std::log(s.original_max_position_embeddings / (rot * 2 * std::numbers::pi)) /
             (2 * std::log(s.theta));
    };
    double low = std::max(std::floor(corr(s.beta_fast)), 0.0);
    double high = std::min(std::ceil(corr(s.beta_slow)), dim - 1.0);
    if (low == high) high += 0.001;
    for (int i = 0; i < dim / 2; ++i) {
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      const double extra = 1.0 - ramp;
      inv[i] = (1.0 / (s.factor * pos[i])) * (1.0 - extra) + (1.0 / pos[i]) * extra;
    }
  } else if (s.type == RopeScalingType::kLlama3) {
    const double old = s.original_max_position_embeddings;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > old / s.low_freq_factor) {
        f /= s.factor;
      } else if (wavelen >= old / s.high_freq_factor) {
        const double smooth =
            (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

struct CacheCase {
  std::string name;
  RopeScaling scaling;
  int dim;
  double attention_scaling;  // HF's attention_factor for this config, from its formula
};

class RopeCacheTest : public ::testing::TestWithParam<CacheCase> {};

TEST_P(RopeCacheTest, TableMatchesHfFormulas) {
  const CacheCase& c = GetParam();
  const int64_t positions = 64;
  absl::StatusOr<Tensor> table = kernels::BuildRopeCache(c.scaling, c.dim, positions);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_NEAR(kernels::RopeAttentionScaling(c.scaling), c.attention_scaling, 1e-12);
  const std::vector<double> inv = ReferenceInvFreq(c.scaling, c.dim);
  std::vector<double> ref(positions * c.dim);
  for (int64_t p = 0; p < positions; ++p) {
    for (int i = 0; i < c.dim / 2; ++i) {
      ref[p * c.dim + i] = std::cos(p * inv[i]) * c.attention_scaling;
      ref[p * c.dim + c.dim / 2 + i] = std::sin(p * inv[i]) * c.attention_scaling;
    }
  }
  // HF forms the angle as an fp32 product (as BuildRopeCache does): angles up to 64 rad carry
  // up to half an fp32 ulp of 64 (3.8e-6) of error against this double reference.
  EXPECT_TRUE(TensorsClose(*table, ref, {.atol = 1e-5, .rtol = 1e-5}));
}

RopeScaling Yarn(double theta, double factor, int64_t orig, double mscale, double mscale_all) {
  RopeScaling s;
  s.type = RopeScalingType::kYarn;
  s.theta = theta;
  s.factor = factor;
  s.original_max_position_embeddings = orig;
  s.mscale = mscale;
  s.mscale_all_dim = mscale_all;
  return s;
}

RopeScaling Llama3() {
  RopeScaling s;
  s.type = RopeScalingType::kLlama3;
  s.theta = 500000;
  s.factor = 8;
  s.original_max_position_embeddings = 8192;
  return s;
}

const CacheCase kCacheCases[] = {
    {"default", RopeScaling{}, 64, 1.0},
    {"default_theta1e6", RopeScaling{.theta = 1e6}, 128, 1.0},
    {"linear", RopeScaling{.type = RopeScalingType::kLinear, .factor = 4.0}, 32, 1.0},
    // DeepSeek-V3: mscale == mscale_all_dim, so cos/sin are unscaled.
    {"yarn_deepseek_v3", Yarn(10000, 40, 4096, 1.0, 1.0), 64, 1.0},
    // Qwen-style yarn: no mscale, attention factor 0.1 ln(factor) + 1.
    {"yarn_qwen", Yarn(1e6, 4, 32768, 0, 0), 128, 0.1 * std::log(4.0) + 1.0},
    {"yarn_mscale_ratio", Yarn(10000, 16, 2048, 1.0, 0.5), 64,
     (0.1 * std::log(16.0) + 1.0) / (0.05 * std::log(16.0) + 1.0)},
    {"llama3", Llama3(), 128, 1.0},
};

INSTANTIATE_TEST_SUITE_P(Cpu, RopeCacheTest, ::testing::ValuesIn(kCacheCases),
                         [](const auto& info) { return info.param.name; });

TEST(RopeCache, DeepseekSoftmaxScale) {
  const double m = 0.1 * 1.0 * std::log(40.0) + 1.0;
  EXPECT_NEAR(kernels::DeepseekSoftmaxScaleMultiplier(Yarn(10000, 40, 4096, 1.0, 1.0)), m * m,
              1e-12);
  EXPECT_EQ(kernels::DeepseekSoftmaxScaleMultiplier(RopeScaling{}), 1.0);
}

TEST(RopeCache, RejectsBadConfigs) {
  EXPECT_FALSE(kernels::BuildRopeCache(RopeScaling{}, 63, 8).ok());
  EXPECT_FALSE(kernels::BuildRopeCache(Yarn(10000, 40, 0, 1, 1), 64, 8).ok());
  EXPECT_FALSE(kernels::BuildRopeCache(RopeScaling{.theta = -1}, 64, 8).ok());
}

// --- Applying the rotation ---

struct ApplyCase {
  std::string name;
  int64_t n, q_heads, k_heads, head_dim;
  int rotary_dim, offset;
  RopeStyle style;
  DType dtype;
};

class RopeApplyTest : public CpuOpTest<ApplyCase> {};

// HF, literally: optional de-interleave (view(r/2, 2).transpose), then
// x * cat(cos, cos) + rotate_half(x) * cat(sin, sin); or GPT-J pairs for kInterleaved.
std::vector<double> ReferenceRotate(std::vector<double> x, const double* cos, const double* sin,
                                    RopeStyle style) {
  const size_t r = x.size(), half = r / 2;
  std::vector<double> out(r);
  if (style == RopeStyle::kInterleaved) {
    for (size_t i = 0; i < half; ++i) {
      out[2 * i] = x[2 * i] * cos[i] - x[2 * i + 1] * sin[i];
      out[2 * i + 1] = x[2 * i + 1] * cos[i] + x[2 * i] * sin[i];
    }
    return out;
  }
  if (style == RopeStyle::kDeinterleaveNeox) {
    std::vector<double> y(r);
    for (size_t c2 = 0; c2 < 2; ++c2)
      for (size_t i = 0; i < half; ++i) y[c2 * half + i] = x[2 * i + c2];
    x = y;
  }
  for (size_t j = 0; j < r; ++j) {
    const double rot = j < half ? -x[j + half] : x[j - half];
    out[j] = x[j] * cos[j % half] + rot * sin[j % half];
  }
  return out;
}

TEST_P(RopeApplyTest, MatchesHfReference) {
  std::mt19937 rng(static_cast<unsigned>(c().n + c().head_dim));
  Tensor table = *kernels::BuildRopeCache(RopeScaling{}, c().rotary_dim, 4096);
  std::vector<int32_t> pos(c().n);
  for (auto& p : pos) p = static_cast<int32_t>(rng() % 4096);
  Tensor positions = I32Tensor(pos, {c().n});
  Tensor q = RandomTensor(c().dtype, {c().n, c().q_heads, c().head_dim}, rng);
  Tensor k =
      c().k_heads > 0 ? RandomTensor(c().dtype, {c().n, c().k_heads, c().head_dim}, rng) : Tensor();
  const std::vector<double> q0 = ToDoubles(q),
                            k0 = k.defined() ? ToDoubles(k) : std::vector<double>();
  kernels::RopeParams params{c().style, c().rotary_dim, c().offset};
  ASSERT_TRUE(backend_->Rope(table, positions, params, q, k).ok());

  const std::vector<double> cs = ToDoubles(table);
  auto reference = [&](const std::vector<double>& x0, int64_t heads) {
    std::vector<double> ref = x0;
    for (int64_t t = 0; t < c().n; ++t) {
      const double* cos = cs.data() + pos[t] * c().rotary_dim;
      const double* sin = cos + c().rotary_dim / 2;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t base = (t * heads + h) * c().head_dim + c().offset;
        std::vector<double> slice(x0.begin() + base, x0.begin() + base + c().rotary_dim);
        std::vector<double> rot = ReferenceRotate(slice, cos, sin, c().style);
        std::copy(rot.begin(), rot.end(), ref.begin() + base);
      }
    }
    return ref;
  };
  EXPECT_TRUE(TensorsClose(q, reference(q0, c().q_heads), ToleranceFor(c().dtype)));
  if (k.defined()) {
    EXPECT_TRUE(TensorsClose(k, reference(k0, c().k_heads), ToleranceFor(c().dtype)));
  }
}

const ApplyCase kApplyCases[] = {
    {"neox_one_token", 1, 4, 2, 64, 64, 0, RopeStyle::kNeox, DType::kF32},
    {"neox_gqa", 9, 8, 2, 128, 128, 0, RopeStyle::kNeox, DType::kF32},
    {"neox_partial", 3, 2, 1, 64, 32, 0, RopeStyle::kNeox, DType::kF32},
    {"neox_bf16", 5, 4, 4, 64, 64, 0, RopeStyle::kNeox, DType::kBF16},
    {"interleaved", 4, 2, 2, 16, 16, 0, RopeStyle::kInterleaved, DType::kF32},
    // DeepSeek MLA: q heads of 192 = 128 nope + 64 rope; k_pe is a single 64-dim head.
    {"deepseek_q_pe", 6, 4, 0, 192, 64, 128, RopeStyle::kDeinterleaveNeox, DType::kF32},
    {"deepseek_k_pe", 6, 1, 1, 64, 64, 0, RopeStyle::kDeinterleaveNeox, DType::kF32},
    {"deepseek_bf16", 2, 2, 1, 96, 32, 64, RopeStyle::kDeinterleaveNeox, DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Cpu, RopeApplyTest,
                         ::testing::Combine(::testing::ValuesIn(kApplyCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<ApplyCase>);

TEST(RopeStyles, DeinterleavedScoresEqualInterleavedScores) {
  // q.k is invariant under the same permutation of both: DeepSeek's HF layout and the original
  // interleaved RoPE give the same attention.
  auto backend = *CpuBackend::Create({});
  std::mt19937 rng(3);
  Tensor table = *kernels::BuildRopeCache(RopeScaling{}, 64, 128);
  Tensor positions = I32Tensor({5, 77}, {2});
  Tensor q = RandomTensor(DType::kF32, {2, 1, 64}, rng),
         k = RandomTensor(DType::kF32, {2, 1, 64}, rng);
  Tensor q2 = *Tensor::Empty(DType::kF32, {2, 1, 64}), k2 = *Tensor::Empty(DType::kF32, {2, 1, 64});
  std::copy_n(q.data<float>(), 128, q2.data<float>());
  std::copy_n(k.data<float>(), 128, k2.data<float>());
  ASSERT_TRUE(backend->Rope(table, positions, {RopeStyle::kDeinterleaveNeox, 64, 0}, q, k).ok());
  ASSERT_TRUE(backend->Rope(table, positions, {RopeStyle::kInterleaved, 64, 0}, q2, k2).ok());
  double a = 0, b = 0;
  for (int i = 0; i < 64; ++i) {
    a += double(q.data<float>()[i]) * k.data<float>()[64 + i];
    b += double(q2.data<float>()[i]) * k2.data<float>()[64 + i];
  }
  EXPECT_NEAR(a, b, 1e-5);
}

TEST(RopeErrors, PositionOutsideTable) {
  auto backend = *CpuBackend::Create({});
  Tensor table = *kernels::BuildRopeCache(RopeScaling{}, 8, 16);
  Tensor q = *Tensor::Zeros(DType::kF32, {1, 1, 8});
  Tensor k;
  absl::Status s = backend->Rope(table, I32Tensor({16}, {1}), {RopeStyle::kNeox, 8, 0}, q, k);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("position 16"), std::string_view::npos) << s;
}

}  // namespace
}  // namespace expertmesh::testing
