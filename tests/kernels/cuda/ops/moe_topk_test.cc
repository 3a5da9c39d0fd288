// LaunchMoeTopK against the CPU backend's MoeTopK for every router the engine serves: softmax
// top-k with and without normalisation (Mixtral, Qwen2/3-MoE), DeepSeek-V2's group-limited
// greedy (kMax groups), DeepSeek-V3's sigmoid with e_score_correction_bias, 8 groups, 4 kept,
// top-2-sum group scores and routed scaling, up to the kernel's 512 experts.
//
// Ids must be identical, in the same (descending choice) order. Scores differ by a few fp32 ulps
// between the two (expf vs exp, tree vs sequential softmax sums), so random inputs are drawn
// with a margin: a token is redrawn while, in a double-precision evaluation of the same
// routing, two adjacent choices among the first top_k + 1, or the last kept and first dropped
// group scores, lie within 1e-5 of each other (exact ties are tested separately: equal inputs
// give equal scores on both sides, and both break ties by lower id).
// Weights: |gpu - cpu| <= (1e-6 + 6e-8 E) |cpu| + 1e-9 (the softmax denominator sums E terms in
// fp32 in different orders).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cuda/ops/moe_topk.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::MoeGroupScore;
using kernels::MoeRoutingParams;
using kernels::MoeScoring;
using kernels::Tensor;
using testing::CudaTest;
using testing::CudaTestWithParam;
using testing::DeviceTensor;

struct TopKCase {
  std::string name;
  int experts;
  int64_t tokens;
  MoeRoutingParams params;
  bool bias;
};

std::string Name(const ::testing::TestParamInfo<TopKCase>& info) { return info.param.name; }

MoeRoutingParams Softmax(int top_k, bool norm) {
  MoeRoutingParams p;
  p.scoring = MoeScoring::kSoftmax;
  p.top_k = top_k;
  p.norm_topk_prob = norm;
  return p;
}

MoeRoutingParams Grouped(MoeScoring scoring, int top_k, int groups, int kept, MoeGroupScore gs,
                         bool norm, float scaling) {
  MoeRoutingParams p;
  p.scoring = scoring;
  p.top_k = top_k;
  p.num_groups = groups;
  p.topk_groups = kept;
  p.group_score = gs;
  p.norm_topk_prob = norm;
  p.routed_scaling_factor = scaling;
  return p;
}

// The smallest gap between two routing decisions of one token, in double precision (see top).
double DecisionMargin(const float* logits, const float* bias, const MoeRoutingParams& p, int E) {
  std::vector<double> score(E), choice(E);
  if (p.scoring == MoeScoring::kSoftmax) {
    const double mx = *std::max_element(logits, logits + E);
    double sum = 0.0;
    for (int e = 0; e < E; ++e) sum += score[e] = std::exp(logits[e] - mx);
    for (int e = 0; e < E; ++e) score[e] /= sum;
  } else {
    for (int e = 0; e < E; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[e])));
  }
  for (int e = 0; e < E; ++e) choice[e] = score[e] + (bias != nullptr ? bias[e] : 0.0);
  double margin = INFINITY;
  std::vector<bool> masked(E, false);
  if (p.num_groups > 1) {
    const int per = E / p.num_groups;
    std::vector<double> gscore(p.num_groups);
    for (int g = 0; g < p.num_groups; ++g) {
      std::vector<double> c(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(c.rbegin(), c.rend());
      gscore[g] = p.group_score == MoeGroupScore::kMax ? c[0] : c[0] + c[1];
    }
    std::vector<int> order(p.num_groups);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return gscore[a] > gscore[b] || (gscore[a] == gscore[b] && a < b);
    });
    if (p.topk_groups < p.num_groups) {
      margin = gscore[order[p.topk_groups - 1]] - gscore[order[p.topk_groups]];
    }
    for (int i = p.topk_groups; i < p.num_groups; ++i) {
      for (int e = order[i] * per; e < (order[i] + 1) * per; ++e) {
        masked[e] = true;
        choice[e] = 0.0;
      }
    }
  }
  std::vector<int> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return choice[a] > choice[b] || (choice[a] == choice[b] && a < b);
  });
  for (int i = 0; i + 1 < E && i < p.top_k; ++i) {
    const int a = order[i], b = order[i + 1];
    if (masked[a] && masked[b]) continue;  // both exactly 0 on every side: a tie by id
    margin = std::min(margin, choice[a] - choice[b]);
  }
  return margin;
}

struct Inputs {
  Tensor logits, bias;
};

Inputs Build(const TopKCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.logits = testing::HostEmpty(DType::kF32, {c.tokens, c.experts});
  if (c.bias) in.bias = testing::RandomTensor(DType::kF32, {c.experts}, rng, -0.1f, 0.1f);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  const float* b = c.bias ? in.bias.data<float>() : nullptr;
  for (int64_t t = 0; t < c.tokens; ++t) {
    float* row = in.logits.data<float>() + t * c.experts;
    for (int attempt = 0;; ++attempt) {
      for (int e = 0; e < c.experts; ++e) row[e] = logit(rng);
      if (DecisionMargin(row, b, c.params, c.experts) > 1e-5) break;
      EXPECT_LT(attempt, 100) << "no well-separated logits found for token " << t;
      if (attempt >= 100) break;
    }
  }
  return in;
}

struct Result {
  Tensor ids, weights;
};

Result RunCpu(const TopKCase& c, const Inputs& in) {
  Result r{testing::HostEmpty(DType::kI32, {c.tokens, c.params.top_k}),
           testing::HostEmpty(DType::kF32, {c.tokens, c.params.top_k})};
  auto cpu = testing::CpuReference();
  const absl::Status st = cpu->MoeTopK(in.logits, in.bias, c.params, r.ids, r.weights);
  EXPECT_TRUE(st.ok()) << st;
  return r;
}

Result RunGpu(const TopKCase& c, const Inputs& in) {
  DeviceTensor logits = testing::ToDevice(in.logits), bias;
  if (in.bias.defined()) bias = testing::ToDevice(in.bias);
  DeviceTensor ids = testing::DevicePoisoned(DType::kI32, {c.tokens, c.params.top_k});
  DeviceTensor weights = testing::DevicePoisoned(DType::kF32, {c.tokens, c.params.top_k});
  MoeTopKArgs a;
  a.logits = logits.tensor.data<float>();
  a.bias = in.bias.defined() ? bias.tensor.data<float>() : nullptr;
  a.topk_ids = ids.tensor.data<int32_t>();
  a.topk_weights = weights.tensor.data<float>();
  a.num_tokens = c.tokens;
  a.num_experts = c.experts;
  a.scoring = static_cast<MoeScoringCode>(c.params.scoring);
  a.top_k = c.params.top_k;
  a.num_groups = c.params.num_groups;
  a.topk_groups = c.params.topk_groups;
  a.group_score = static_cast<MoeGroupScoreCode>(c.params.group_score);
  a.norm_topk_prob = c.params.norm_topk_prob;
  a.routed_scaling_factor = c.params.routed_scaling_factor;
  EXPECT_EQ(LaunchMoeTopK(a, nullptr), cudaSuccess);
  return Result{testing::ToHost(ids.tensor), testing::ToHost(weights.tensor)};
}

void ExpectMatch(const TopKCase& c, const Result& want, const Result& got) {
  EXPECT_TRUE(testing::BitEqual(got.ids, want.ids)) << "ids";
  const double rel = 1e-6 + 6e-8 * c.experts;
  EXPECT_TRUE(testing::Close(got.weights, want.weights, {rel, 1e-9, 0})) << "weights";
}

class MoeTopKGpuTest : public CudaTestWithParam<TopKCase> {};

TEST_P(MoeTopKGpuTest, MatchesCpu) {
  const TopKCase& c = GetParam();
  const Inputs in = Build(c, 101u + static_cast<uint32_t>(c.name.size()));
  ExpectMatch(c, RunCpu(c, in), RunGpu(c, in));
}

constexpr MoeScoring kSoft = MoeScoring::kSoftmax;
constexpr MoeScoring kSig = MoeScoring::kSigmoid;

INSTANTIATE_TEST_SUITE_P(
    Routers, MoeTopKGpuTest,
    ::testing::Values(TopKCase{"mixtral_one_token", 8, 1, Softmax(2, true), false},
                      TopKCase{"mixtral", 8, 37, Softmax(2, true), false},
                      TopKCase{"qwen3_moe", 128, 100, Softmax(8, true), false},
                      TopKCase{"qwen2_moe_60_experts", 60, 33, Softmax(4, false), false},
                      TopKCase{"deepseek_v3_one_token", 256, 1,
                               Grouped(kSig, 8, 8, 4, MoeGroupScore::kTop2Sum, true, 2.5f), true},
                      TopKCase{"deepseek_v3", 256, 64,
                               Grouped(kSig, 8, 8, 4, MoeGroupScore::kTop2Sum, true, 2.5f), true},
                      TopKCase{"deepseek_v3_unnormalised", 256, 16,
                               Grouped(kSig, 8, 8, 4, MoeGroupScore::kTop2Sum, false, 2.5f), true},
                      TopKCase{"deepseek_v2", 160, 50,
                               Grouped(kSoft, 6, 8, 3, MoeGroupScore::kMax, false, 16.0f), false},
                      TopKCase{"sigmoid_groups_no_bias", 64, 17,
                               Grouped(kSig, 4, 4, 2, MoeGroupScore::kTop2Sum, false, 1.0f), false},
                      TopKCase{"sigmoid_512_experts", 512, 20,
                               Grouped(kSig, 10, 1, 1, MoeGroupScore::kTop2Sum, true, 1.0f), true},
                      TopKCase{"softmax_512_experts", 512, 9, Softmax(16, true), false},
                      TopKCase{"all_experts", 16, 5, Softmax(16, true), false},
                      TopKCase{"one_expert", 1, 3, Softmax(1, false), false},
                      TopKCase{"group_of_all_kept", 32, 6,
                               Grouped(kSig, 3, 4, 4, MoeGroupScore::kTop2Sum, true, 1.0f), true},
                      // More tokens than one grid's 65535 blocks of 4 tokens.
                      TopKCase{"many_tokens", 8, 300000, Softmax(2, true), false}),
    Name);

// Exact ties: equal logits give bit-equal scores on each side, so both must pick the lowest
// ids (and, with groups, the lowest groups), with equal weights.
class MoeTopKTiesTest : public CudaTest {};

TEST_F(MoeTopKTiesTest, EqualLogitsPickLowestIds) {
  const std::vector<TopKCase> cases = {
      {"softmax", 64, 3, Softmax(4, false), false},
      {"deepseek_v3", 256, 2, Grouped(kSig, 8, 8, 4, MoeGroupScore::kTop2Sum, true, 2.5f), true},
      {"deepseek_v2", 160, 2, Grouped(kSoft, 6, 8, 3, MoeGroupScore::kMax, false, 16.0f), false},
  };
  for (const TopKCase& c : cases) {
    SCOPED_TRACE(c.name);
    Inputs in;
    in.logits = testing::HostEmpty(DType::kF32, {c.tokens, c.experts});
    for (int64_t i = 0; i < in.logits.numel(); ++i) in.logits.data<float>()[i] = 0.25f;
    // Token 1: pairs of equal logits (e and e ^ 1), so every choice is tied with a neighbour.
    for (int e = 0; e < c.experts; ++e) {
      in.logits.data<float>()[c.experts + e] = 0.01f * static_cast<float>(e / 2);
    }
    if (c.bias) {
      in.bias = testing::HostEmpty(DType::kF32, {c.experts});
      for (int e = 0; e < c.experts; ++e) in.bias.data<float>()[e] = 0.0f;
    }
    const Result want = RunCpu(c, in);
    for (int j = 0; j < c.params.top_k; ++j) EXPECT_EQ(want.ids.data<int32_t>()[j], j);
    ExpectMatch(c, want, RunGpu(c, in));
  }
}

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(MoeTopKLaunchTest, UnsupportedShapesAreInvalidValue) {
  MoeTopKArgs a;
  a.num_tokens = 1;
  a.num_experts = kMoeTopKMaxExperts + 1;
  EXPECT_EQ(LaunchMoeTopK(a, nullptr), cudaErrorInvalidValue);
  a.num_experts = 6;
  a.num_groups = 4;  // does not divide 6
  EXPECT_EQ(LaunchMoeTopK(a, nullptr), cudaErrorInvalidValue);
  a.num_groups = 1;
  a.top_k = 7;
  EXPECT_EQ(LaunchMoeTopK(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
