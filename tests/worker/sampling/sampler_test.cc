#include "worker/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace expertmesh::sampling {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

SamplingParams Random(float temperature = 1.0f, uint64_t seed = 42) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

// The filters written the plain way: full softmax, full sort, then each rule as documented.
std::map<int32_t, double> ReferenceDistribution(const std::vector<float>& logits,
                                                const SamplingParams& p) {
  const int n = static_cast<int>(logits.size());
  auto scaled = [&](int i) { return static_cast<double>(logits[i]) / p.temperature; };
  double max = -INFINITY;
  for (int i = 0; i < n; ++i) max = std::max(max, scaled(i));
  std::vector<std::pair<double, int32_t>> probs;  // (prob, token)
  double z = 0;
  for (int i = 0; i < n; ++i) z += std::exp(scaled(i) - max);
  for (int i = 0; i < n; ++i) probs.push_back({std::exp(scaled(i) - max) / z, i});
  std::sort(probs.begin(), probs.end(), [](auto a, auto b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  const double pmax = probs[0].first;
  std::vector<std::pair<double, int32_t>> kept;
  for (auto [prob, tok] : probs) {
    if (prob > 0 && prob >= p.min_p * pmax) kept.push_back({prob, tok});
  }
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < kept.size()) kept.resize(p.top_k);
  double mass = 0;
  for (auto [prob, tok] : kept) mass += prob;
  if (p.top_p < 1) {
    double cum = 0;
    size_t keep = 0;
    while (keep < kept.size() && cum < p.top_p) cum += kept[keep++].first / mass;
    kept.resize(std::max<size_t>(keep, 1));
  }
  std::map<int32_t, double> out;
  double total = 0;
  for (auto [prob, tok] : kept) total += prob;
  for (auto [prob, tok] : kept) out[tok] = prob / total;
  return out;
}

TEST(SamplerTest, GreedyIsArgmaxWithLowestIdOnTies) {
  Sampler sampler;
  SamplingParams greedy;
  greedy.temperature = 0;
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  auto t = sampler.Sample(logits, greedy, {});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, 1);
  greedy.seed = 7;  // irrelevant to greedy
  EXPECT_EQ(sampler.Sample(logits, greedy, {})->token, 1);
}

TEST(SamplerTest, RepetitionPenaltyFollowsHuggingFace) {
  Sampler sampler;
  SamplingParams p = Random(1.0f);
  p.repetition_penalty = 2.0f;
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f};
  std::vector<int32_t> prompt = {0, 0}, output = {1};
  // Penalised: {1.0, -4.0, 1.0, 0.5}; token 0 appears twice but is penalised once.
  auto dist = sampler.Distribution(logits, p, {prompt, output});
  ASSERT_TRUE(dist.ok());
  const double z = std::exp(1.0) * 2 + std::exp(-4.0) + std::exp(0.5);
  ASSERT_EQ(dist->size(), 4u);
  EXPECT_NEAR((*dist)[0].prob, std::exp(1.0) / z, 1e-9);
  EXPECT_NEAR((*dist)[1].prob, std::exp(-4.0) / z, 1e-9);
  EXPECT_NEAR((*dist)[3].prob, std::exp(0.5) / z, 1e-9);
}

TEST(SamplerTest, FrequencyAndPresencePenaltiesCountOnlyOutputTokens) {
  Sampler sampler;
  SamplingParams p = Random(1.0f);
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  std::vector<float> logits = {0, 0, 0, 0};
  std::vector<int32_t> prompt = {0}, output = {2, 2, 3};
  auto dist = sampler.Distribution(logits, p, {prompt, output});
  ASSERT_TRUE(dist.ok());
  // Penalised: {0, 0, -1.25, -0.75}.
  const double z = 2 + std::exp(-1.25) + std::exp(-0.75);
  EXPECT_NEAR((*dist)[0].prob, 1 / z, 1e-9);
  EXPECT_NEAR((*dist)[2].prob, std::exp(-1.25) / z, 1e-9);
  EXPECT_NEAR((*dist)[3].prob, std::exp(-0.75) / z, 1e-9);
  // The scratch state is reset: the same call without history is uniform.
  auto plain = sampler.Distribution(logits, Random(), {});
  EXPECT_NEAR((*plain)[2].prob, 0.25, 1e-12);
}

struct FilterCase {
  const char* name;
  float temperature;
  int top_k;
  float top_p;
  float min_p;
};

class FilterTest : public ::testing::TestWithParam<FilterCase> {};

TEST_P(FilterTest, MatchesReference) {
  const FilterCase& c = GetParam();
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  Sampler sampler;
  for (int vocab : {1, 7, 300}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> logits(vocab);
      for (float& l : logits) l = normal(rng);
      if (vocab > 10) logits[3] = logits[5];  // a tie
      SamplingParams p = Random(c.temperature);
      p.top_k = c.top_k;
      p.top_p = c.top_p;
      p.min_p = c.min_p;
      auto dist = sampler.Distribution(logits, p, {});
      ASSERT_TRUE(dist.ok()) << dist.status();
      std::map<int32_t, double> expected = ReferenceDistribution(logits, p);
      ASSERT_EQ(dist->size(), expected.size()) << "vocab " << vocab << " trial " << trial;
      for (const TokenProb& t : *dist) {
        ASSERT_TRUE(expected.contains(t.token)) << t.token;
        EXPECT_NEAR(t.prob, expected[t.token], 1e-9);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, FilterTest,
                         ::testing::Values(FilterCase{"plain", 1.0f, 0, 1.0f, 0.0f},
                                           FilterCase{"hot", 2.5f, 0, 1.0f, 0.0f},
                                           FilterCase{"cold", 0.2f, 0, 1.0f, 0.0f},
                                           FilterCase{"top_k", 1.0f, 5, 1.0f, 0.0f},
                                           FilterCase{"top_p", 0.8f, 0, 0.7f, 0.0f},
                                           FilterCase{"top_p_wide", 1.5f, 0, 0.99f, 0.0f},
                                           FilterCase{"min_p", 1.0f, 0, 1.0f, 0.1f},
                                           FilterCase{"all", 0.9f, 20, 0.9f, 0.05f},
                                           FilterCase{"tiny_top_p", 1.0f, 0, 1e-6f, 0.0f}),
                         [](const auto& info) { return std::string(info.param.name); });

// Many seeded draws (one per step counter) follow the distribution: Pearson chi-square with
// 7 degrees of freedom under 24.3 (p = 0.001). Deterministic: the seed is fixed.
TEST(SamplerTest, DrawsFollowTheDistribution) {
  Sampler sampler;
  std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, 1.5f, -0.5f, 0.2f};
  SamplingParams p = Random(1.0f, 2024);
  auto dist = sampler.Distribution(logits, p, {});
  ASSERT_TRUE(dist.ok());
  constexpr int kDraws = 40000;
  std::vector<int> counts(logits.size(), 0);
  std::vector<int32_t> output;
  output.reserve(kDraws);
  for (int i = 0; i < kDraws; ++i) {
    // The history's length is the step counter; the tokens in it do not matter without
    // penalties, so reuse token 0.
    auto t = sampler.Sample(logits, p, {{}, output});
    ASSERT_TRUE(t.ok());
    ++counts[t->token];
    output.push_back(0);
  }
  double chi2 = 0;
  for (const TokenProb& t : *dist) {
    const double expected = t.prob * kDraws;
    chi2 += (counts[t.token] - expected) * (counts[t.token] - expected) / expected;
  }
  EXPECT_LT(chi2, 24.3);
  // And the draws are not degenerate (every token appears).
  for (int c : counts) EXPECT_GT(c, 0);
}

TEST(SamplerTest, TopKDrawsOnlyKeptTokens) {
  Sampler sampler;
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 2.5f, 0.0f};
  SamplingParams p = Random(5.0f, 1);
  p.top_k = 2;
  std::vector<int32_t> output;
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) {
    ++seen[sampler.Sample(logits, p, {{}, output})->token];
    output.push_back(0);
  }
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen.contains(1) && seen.contains(3));
}

TEST(SamplerTest, SeededDrawsAreReproducibleAndDependOnSeedAndStep) {
  Sampler a, b;
  std::vector<float> logits(50, 0.0f);  // uniform: the draw is pure randomness
  std::vector<int32_t> history;
  std::vector<int32_t> run1, run2, run3;
  for (int step = 0; step < 64; ++step) {
    history.resize(step, 0);
    run1.push_back(a.Sample(logits, Random(1.0f, 5), {{}, history})->token);
    run2.push_back(b.Sample(logits, Random(1.0f, 5), {{}, history})->token);
    run3.push_back(b.Sample(logits, Random(1.0f, 6), {{}, history})->token);
  }
  EXPECT_EQ(run1, run2);
  EXPECT_NE(run1, run3);
  std::sort(run1.begin(), run1.end());
  EXPECT_GT(std::unique(run1.begin(), run1.end()) - run1.begin(), 20);  // not stuck
}

TEST(SamplerTest, CounterUniformIsInRangeAndUniform) {
  double sum = 0;
  for (uint64_t i = 0; i < 100000; ++i) {
    const double u = CounterUniform(3, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
  EXPECT_NE(CounterRandom(1, 0), CounterRandom(2, 0));
  EXPECT_NE(CounterRandom(1, 0), CounterRandom(1, 1));
}

TEST(SamplerTest, EdgeCases) {
  Sampler sampler;
  // All -inf but one: always that token, greedy or not.
  std::vector<float> one = {kNegInf, kNegInf, 0.3f, kNegInf};
  EXPECT_EQ(sampler.Sample(one, Random(1.0f), {})->token, 2);
  EXPECT_EQ(sampler.Sample(one, Random(0.0f), {})->token, 2);
  // top_p tiny keeps only the most likely token (lowest id on a tie).
  SamplingParams tiny = Random(1.0f);
  tiny.top_p = 1e-6f;
  std::vector<float> tie = {0.1f, 2.0f, 2.0f};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    tiny.seed = seed;
    EXPECT_EQ(sampler.Sample(tie, tiny, {})->token, 1);
  }
  // Vocab of 1.
  std::vector<float> single = {-5.0f};
  SamplingParams lp = Random(0.7f);
  lp.logprobs = true;
  lp.top_logprobs = 5;
  auto t = sampler.Sample(single, lp, {});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, 0);
  EXPECT_FLOAT_EQ(t->logprob, 0.0f);
  EXPECT_THAT(t->top_logprobs, ElementsAre(TokenLogprob{0, 0.0f}));
}

TEST(SamplerTest, BadInputsAreInvalidArgument) {
  Sampler sampler;
  std::vector<float> logits = {0, 1, 2};
  auto code = [&](std::span<const float> l, SamplingParams p, SamplingHistory h) {
    return sampler.Sample(l, p, h).status();
  };
  EXPECT_THAT(code({}, Random(), {}).message(), HasSubstr("empty logits"));
  std::vector<float> nan = {0, std::nanf(""), 1};
  EXPECT_THAT(code(nan, Random(), {}).message(), HasSubstr("logit of token 1"));
  std::vector<float> inf = {kNegInf, kNegInf};
  EXPECT_THAT(code(inf, Random(), {}).message(), HasSubstr("every logit is -inf"));
  std::vector<int32_t> bad = {0, 3};
  EXPECT_THAT(code(logits, Random(), {{}, bad}).message(), HasSubstr("output token 1 is id 3"));
}

TEST(SamplerTest, LogprobsAreRawLogSoftmaxWithTopAlternatives) {
  Sampler sampler;
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f};
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 1.5f;  // changes the sampling logits, not the reported logprobs
  p.logprobs = true;
  p.top_logprobs = 3;
  std::vector<int32_t> prompt = {1};
  auto t = sampler.Sample(logits, p, {prompt, {}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, 3);  // 3.0 / 1.5 = 2.0 for token 1, so token 3 wins
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(t->logprob, 3.0 - lse, 1e-6);
  ASSERT_EQ(t->top_logprobs.size(), 3u);
  EXPECT_EQ(t->top_logprobs[0].token, 1);  // tie with 3: lower id first
  EXPECT_EQ(t->top_logprobs[1].token, 3);
  EXPECT_EQ(t->top_logprobs[2].token, 2);
  EXPECT_NEAR(t->top_logprobs[2].logprob, 2.0 - lse, 1e-6);
  p.logprobs = false;
  p.top_logprobs = 0;
  EXPECT_TRUE(sampler.Sample(logits, p, {prompt, {}})->top_logprobs.empty());
}

}  // namespace
}  // namespace expertmesh::sampling

namespace expertmesh::sampling {
namespace {

// A token mask (constrained decoding) restricts the draw after the penalties, and leaves the
// logprobs those of the raw logits.
TEST(SamplerMaskTest, DrawsOnlyAllowedTokensWithRawLogprobs) {
  std::vector<float> logits(40);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i % 7) * 0.5f;
  // Allowed: 3, 17 and 33 (the last word is partial: 40 tokens in 2 words).
  const std::vector<uint32_t> allowed = {(1u << 3) | (1u << 17), 1u << 1};
  Sampler sampler;
  SamplingParams greedy = Random(0.0f);
  greedy.logprobs = true;
  greedy.top_logprobs = 2;
  auto unmasked = sampler.Sample(logits, greedy, {});
  ASSERT_TRUE(unmasked.ok());
  EXPECT_EQ(unmasked->token, 6);  // the raw argmax
  auto t = sampler.Sample(logits, greedy, {}, allowed);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, 33);  // logit 2.5 (33 % 7 = 5) beats 3's and 17's 1.5
  // Raw logprobs: the same top alternatives as unmasked, and the token's own raw value.
  EXPECT_EQ(t->top_logprobs, unmasked->top_logprobs);
  std::vector<TokenProb> scratch;
  auto raw = ScoreToken(logits, t->token, 0, scratch);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(t->logprob, raw->logprob);
  std::map<int32_t, int> counts;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    auto d = sampler.Sample(logits, Random(1.0f, seed), {}, allowed);
    ASSERT_TRUE(d.ok());
    ++counts[d->token];
  }
  for (const auto& [token, n] : counts) {
    EXPECT_TRUE(token == 3 || token == 17 || token == 33) << token;
  }
  EXPECT_EQ(counts.size(), 3u);
}

TEST(SamplerMaskTest, PenaltiesApplyBeforeTheMask) {
  std::vector<float> logits = {2.0f, 1.9f, 5.0f, 0.0f};
  SamplingParams p = Random(0.0f);
  p.repetition_penalty = 2.0f;  // token 0 seen: 2.0 -> 1.0, below token 1's 1.9
  const std::vector<int32_t> prompt = {0};
  const std::vector<uint32_t> allowed = {0b0011};
  Sampler sampler;
  auto t = sampler.Sample(logits, p, {prompt, {}}, allowed);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, 1);
}

TEST(SamplerMaskTest, RefusesMasksOfTheWrongSizeOrWithNothingAllowed) {
  std::vector<float> logits(40, 0.0f);
  Sampler sampler;
  const std::vector<uint32_t> one_word = {~0u};
  EXPECT_EQ(sampler.Sample(logits, Random(), {}, one_word).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<uint32_t> none = {0u, 0u};
  auto t = sampler.Sample(logits, Random(), {}, none);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("mask leaves nothing"));
}

}  // namespace
}  // namespace expertmesh::sampling
