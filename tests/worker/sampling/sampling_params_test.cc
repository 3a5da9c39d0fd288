#include "worker/sampling/sampling_params.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace expertmesh::sampling {
namespace {

using ::testing::HasSubstr;

struct BadCase {
  std::string name;
  SamplingParams params;
  std::string message;
};
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

SamplingParams With(void (*edit)(SamplingParams&)) {
  SamplingParams p;
  edit(p);
  return p;
}

class BadSamplingParamsTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadSamplingParamsTest, IsInvalidArgumentNamingTheField) {
  absl::Status status = ValidateSamplingParams(GetParam().params);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    All, BadSamplingParamsTest,
    ::testing::Values(
        BadCase{"negative_temperature", With([](auto& p) { p.temperature = -0.5f; }),
                "temperature must be in [0, 100], got -0.5"},
        BadCase{"nan_temperature", With([](auto& p) { p.temperature = std::nanf(""); }),
                "temperature"},
        BadCase{"inf_temperature",
                With([](auto& p) { p.temperature = std::numeric_limits<float>::infinity(); }),
                "temperature"},
        BadCase{"top_k", With([](auto& p) { p.top_k = -2; }), "top_k"},
        BadCase{"top_p_zero", With([](auto& p) { p.top_p = 0; }), "top_p must be in (0, 1]"},
        BadCase{"top_p_big", With([](auto& p) { p.top_p = 1.5f; }), "top_p"},
        BadCase{"top_p_nan", With([](auto& p) { p.top_p = std::nanf(""); }), "top_p"},
        BadCase{"min_p", With([](auto& p) { p.min_p = -0.1f; }), "min_p must be in [0, 1]"},
        BadCase{"repetition_zero", With([](auto& p) { p.repetition_penalty = 0; }),
                "repetition_penalty"},
        BadCase{"presence", With([](auto& p) { p.presence_penalty = 2.5f; }), "presence_penalty"},
        BadCase{"frequency", With([](auto& p) { p.frequency_penalty = -3; }), "frequency_penalty"},
        BadCase{"top_logprobs_big", With([](auto& p) {
                  p.logprobs = true;
                  p.top_logprobs = 21;
                }),
                "top_logprobs must be in [0, 20]"},
        BadCase{"top_logprobs_without_logprobs", With([](auto& p) { p.top_logprobs = 3; }),
                "requires logprobs"}),
    [](const auto& info) { return info.param.name; });

TEST(SamplingParamsTest, AcceptsDefaultsAndEdges) {
  EXPECT_TRUE(ValidateSamplingParams({}).ok());
  SamplingParams p;
  p.temperature = 0;
  p.top_k = -1;
  p.top_p = 1e-6f;
  p.min_p = 1;
  p.presence_penalty = -2;
  p.frequency_penalty = 2;
  p.logprobs = true;
  p.top_logprobs = kMaxTopLogprobs;
  EXPECT_TRUE(ValidateSamplingParams(p).ok()) << ValidateSamplingParams(p);
  EXPECT_TRUE(p.IsGreedy());
}

}  // namespace
}  // namespace expertmesh::sampling
