// MoE router top-k against a plain reference of Hugging Face's routers (Mixtral, Qwen2-MoE,
// Qwen3-MoE, DeepSeek-V2 group_limited_greedy, DeepSeek-V3 noaux_tc), in double precision.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

using kernels::MoeGroupScore;
using kernels::MoeRoutingParams;
using kernels::MoeScoring;

struct TopKCase {
  std::string name;
  int64_t n;
  int experts;
  MoeRoutingParams params;
  bool bias;
};

// Sorted full ranking (descending value, ascending index) - simpler than the kernel's selection.
std::vector<int> Ranking(const std::vector<double>& v) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return v[a] > v[b]; });
  return idx;
}

void ReferenceRoute(const double* logits, const double* bias, int experts,
                    const MoeRoutingParams& p, std::vector<int>& ids, std::vector<double>& w) {
  std::vector<double> scores(experts);
  if (p.scoring == MoeScoring::kSoftmax) {
    double mx = *std::max_element(logits, logits + experts), sum = 0;
    for (int e = 0; e < experts; ++e) sum += scores[e] = std::exp(logits[e] - mx);
    for (double& s : scores) s /= sum;
  } else {
    for (int e = 0; e < experts; ++e) scores[e] = 1.0 / (1.0 + std::exp(-logits[e]));
  }
  std::vector<double> choice = scores;
  if (bias) {
    for (int e = 0; e < experts; ++e) choice[e] += bias[e];
  }
  if (p.num_groups > 1) {
    const int per = experts / p.num_groups;
    std::vector<double> gs(p.num_groups);
    for (int g = 0; g < p.num_groups; ++g) {
      std::vector<double> members(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(members.rbegin(), members.rend());
      gs[g] = p.group_score == MoeGroupScore::kMax ? members[0] : members[0] + members[1];
    }
    std::vector<int> rank = Ranking(gs);
    std::vector<bool> keep(p.num_groups, false);
    for (int i = 0; i < p.topk_groups; ++i) keep[rank[i]] = true;
    for (int e = 0; e < experts; ++e) {
      if (!keep[e / per]) choice[e] = 0.0;
    }
  }
  std::vector<int> rank = Ranking(choice);
  ids.assign(rank.begin(), rank.begin() + p.top_k);
  w.resize(p.top_k);
  double sum = 0;
  for (int j = 0; j < p.top_k; ++j) sum += w[j] = scores[ids[j]];
  for (double& x : w) x = (p.norm_topk_prob ? x / (sum + 1e-20) : x) * p.routed_scaling_factor;
}

class MoeTopKTest : public CpuOpTest<TopKCase> {};

TEST_P(MoeTopKTest, MatchesHfRouter) {
  std::mt19937 rng(static_cast<unsigned>(c().n * 13 + c().experts));
  const int k = c().params.top_k;
  Tensor logits = RandomTensor(DType::kF32, {c().n, c().experts}, rng, -4.0f, 4.0f);
  Tensor bias = c().bias ? RandomTensor(DType::kF32, {c().experts}, rng, -0.3f, 0.3f) : Tensor();
  Tensor ids = *Tensor::Empty(DType::kI32, {c().n, k});
  Tensor weights = *Tensor::Empty(DType::kF32, {c().n, k});
  absl::Status s = backend_->MoeTopK(logits, bias, c().params, ids, weights);
  ASSERT_TRUE(s.ok()) << s;
  const std::vector<double> ld = ToDoubles(logits);
  const std::vector<double> bd = c().bias ? ToDoubles(bias) : std::vector<double>();
  std::vector<double> ref_ids, ref_w;
  for (int64_t t = 0; t < c().n; ++t) {
    std::vector<int> ri;
    std::vector<double> rw;
    ReferenceRoute(ld.data() + t * c().experts, c().bias ? bd.data() : nullptr, c().experts,
                   c().params, ri, rw);
    ref_ids.insert(ref_ids.end(), ri.begin(), ri.end());
    ref_w.insert(ref_w.end(), rw.begin(), rw.end());
  }
  EXPECT_TRUE(TensorsClose(ids, ref_ids, {.atol = 0, .rtol = 0}));
  EXPECT_TRUE(TensorsClose(weights, ref_w, {.atol = 2e-6, .rtol = 2e-6}));
}

MoeRoutingParams Softmax(int k, bool norm) {
  return {.scoring = MoeScoring::kSoftmax, .top_k = k, .norm_topk_prob = norm};
}
MoeRoutingParams DeepseekV3(int k, int groups, int topk_groups, float scale) {
  return {.scoring = MoeScoring::kSigmoid,
          .top_k = k,
          .num_groups = groups,
          .topk_groups = topk_groups,
          .group_score = MoeGroupScore::kTop2Sum,
          .norm_topk_prob = true,
          .routed_scaling_factor = scale};
}

const TopKCase kTopKCases[] = {
    {"mixtral_one_token", 1, 8, Softmax(2, true), false},
    {"mixtral", 37, 8, Softmax(2, true), false},
    {"qwen2_moe_no_norm", 19, 60, Softmax(4, false), false},
    {"qwen3_moe", 33, 128, Softmax(8, true), false},
    {"top1_of_2", 5, 2, Softmax(1, true), false},
    {"all_experts", 4, 6, Softmax(6, true), false},
    {"deepseek_v3", 21, 64, DeepseekV3(6, 8, 4, 2.5f), true},
    {"deepseek_v3_no_bias", 9, 32, DeepseekV3(4, 4, 2, 1.0f), false},
    {"deepseek_v3_unnormalised",
     9,
     32,
     {.scoring = MoeScoring::kSigmoid,
      .top_k = 3,
      .num_groups = 4,
      .topk_groups = 1,
      .group_score = MoeGroupScore::kTop2Sum,
      .routed_scaling_factor = 1.5f},
     true},
    {"deepseek_v2_group_max",
     17,
     64,
     {.scoring = MoeScoring::kSoftmax,
      .top_k = 6,
      .num_groups = 8,
      .topk_groups = 3,
      .group_score = MoeGroupScore::kMax,
      .routed_scaling_factor = 16.0f},
     false},
};

INSTANTIATE_TEST_SUITE_P(Cpu, MoeTopKTest,
                         ::testing::Combine(::testing::ValuesIn(kTopKCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<TopKCase>);

TEST(MoeTopK, TiesGoToTheLowerExpertId) {
  auto backend = *CpuBackend::Create({});
  Tensor logits = *Tensor::Zeros(DType::kF32, {2, 8});
  Tensor ids = *Tensor::Empty(DType::kI32, {2, 3}), w = *Tensor::Empty(DType::kF32, {2, 3});
  ASSERT_TRUE(backend->MoeTopK(logits, Tensor(), Softmax(3, true), ids, w).ok());
  EXPECT_TRUE(TensorsClose(ids, {0, 1, 2, 0, 1, 2}, {.atol = 0, .rtol = 0}));
  EXPECT_TRUE(TensorsClose(w, std::vector<double>(6, 1.0 / 3), {.atol = 1e-7, .rtol = 1e-6}));
}

TEST(MoeTopK, BadParamsAreInvalidArgument) {
  auto backend = *CpuBackend::Create({});
  Tensor logits = *Tensor::Zeros(DType::kF32, {1, 8});
  Tensor ids = *Tensor::Empty(DType::kI32, {1, 9}), w = *Tensor::Empty(DType::kF32, {1, 9});
  EXPECT_EQ(backend->MoeTopK(logits, Tensor(), Softmax(9, true), ids, w).code(),
            absl::StatusCode::kInvalidArgument);
  Tensor ids2 = *Tensor::Empty(DType::kI32, {1, 2}), w2 = *Tensor::Empty(DType::kF32, {1, 2});
  EXPECT_EQ(backend->MoeTopK(logits, Tensor(), DeepseekV3(2, 3, 1, 1), ids2, w2).code(),
            absl::StatusCode::kInvalidArgument);  // 8 experts in 3 groups
  Tensor bias = *Tensor::Zeros(DType::kF32, {8});
  EXPECT_EQ(backend->MoeTopK(logits, bias, Softmax(2, true), ids2, w2).code(),
            absl::StatusCode::kInvalidArgument);  // bias with softmax
}

}  // namespace
}  // namespace expertmesh::testing
