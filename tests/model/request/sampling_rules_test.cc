#include "model/request/sampling_rules.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace expertmesh::model {
namespace {

std::string Violated(const SamplingValues& v) {
  const std::optional<SamplingRuleViolation> bad = CheckSamplingValues(v);
  return bad.has_value() ? bad->parameter + ": " + bad->message : "";
}

TEST(SamplingRulesTest, DefaultsAndEdgesAreAllowed) {
  EXPECT_EQ(Violated({}), "");
  EXPECT_EQ(Violated({.temperature = 0, .top_k = -1, .top_p = 1, .min_p = 0}), "");
  EXPECT_EQ(Violated({.temperature = 100,
                      .top_k = 0,
                      .top_p = 1e-6,
                      .min_p = 1,
                      .repetition_penalty = 10,
                      .presence_penalty = -2,
                      .frequency_penalty = 2,
                      .top_logprobs = kMaxTopLogprobs,
                      .logprobs = true}),
            "");
}

TEST(SamplingRulesTest, EachRangeNamesItsParameter) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(Violated({.temperature = -0.5}),
            "temperature: temperature must be in [0, 100], got -0.5");
  EXPECT_EQ(Violated({.temperature = nan}).substr(0, 13), "temperature: ");
  EXPECT_EQ(Violated({.temperature = inf}).substr(0, 13), "temperature: ");
  EXPECT_EQ(Violated({.top_k = -2}).substr(0, 7), "top_k: ");
  EXPECT_EQ(Violated({.top_p = 0}), "top_p: top_p must be in (0, 1], got 0");
  EXPECT_EQ(Violated({.min_p = 1.5}).substr(0, 7), "min_p: ");
  EXPECT_EQ(Violated({.repetition_penalty = 0}).substr(0, 20), "repetition_penalty: ");
  EXPECT_EQ(Violated({.presence_penalty = 2.5}).substr(0, 18), "presence_penalty: ");
  EXPECT_EQ(Violated({.frequency_penalty = nan}).substr(0, 19), "frequency_penalty: ");
  EXPECT_EQ(Violated({.top_logprobs = 21, .logprobs = true}).substr(0, 14), "top_logprobs: ");
  EXPECT_EQ(Violated({.top_logprobs = 3}),
            "top_logprobs: top_logprobs requires logprobs to be enabled");
}

}  // namespace
}  // namespace expertmesh::model
