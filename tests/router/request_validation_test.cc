#include "router/request_validation.h"

#include "gtest/gtest.h"

namespace expertmesh::router {
namespace {

TEST(ValidateParams, AcceptsDefaultsAndEdges) {
  GenerationParams p;
  EXPECT_TRUE(ValidateParams(p, {}).ok());
  p.temperature = 0;
  p.top_p = 1;
  p.top_logprobs = 20;
  p.n = 16;
  p.presence_penalty = -2;
  EXPECT_TRUE(ValidateParams(p, {}).ok());
}

struct BadCase {
  const char* param;
  GenerationParams params;
};

TEST(ValidateParams, RejectsOutOfRangeNamingTheParam) {
  std::vector<BadCase> cases;
  auto add = [&](const char* param, auto edit) {
    BadCase c{param, {}};
    edit(c.params);
    cases.push_back(c);
  };
  add("temperature", [](GenerationParams& p) { p.temperature = -0.5f; });
  add("temperature", [](GenerationParams& p) { p.temperature = 1e9f; });
  add("top_p", [](GenerationParams& p) { p.top_p = 0; });
  add("top_p", [](GenerationParams& p) { p.top_p = 1.5f; });
  add("min_p", [](GenerationParams& p) { p.min_p = -1; });
  add("presence_penalty", [](GenerationParams& p) { p.presence_penalty = 3; });
  add("frequency_penalty", [](GenerationParams& p) { p.frequency_penalty = -2.5f; });
  add("repetition_penalty", [](GenerationParams& p) { p.repetition_penalty = 0; });
  add("max_tokens", [](GenerationParams& p) { p.max_tokens = 0; });
  add("n", [](GenerationParams& p) { p.n = 0; });
  add("n", [](GenerationParams& p) { p.n = 17; });
  add("top_logprobs", [](GenerationParams& p) { p.top_logprobs = 21; });
  add("stop", [](GenerationParams& p) { p.stop.assign(17, "x"); });
  add("stop", [](GenerationParams& p) { p.stop = {""}; });
  add("stop", [](GenerationParams& p) { p.stop = {std::string(300, 'a')}; });
  for (const BadCase& c : cases) {
    absl::Status s = ValidateParams(c.params, {});
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << c.param << ": " << s;
    EXPECT_EQ(ParamOf(s), c.param) << s;
    EXPECT_NE(std::string(s.message()).find(c.param), std::string::npos) << s;
  }
}

TEST(ResolveMaxTokens, DefaultsToTheRoomLeft) {
  EXPECT_EQ(*ResolveMaxTokens(10, std::nullopt, 100, {}), 90u);
  EXPECT_EQ(*ResolveMaxTokens(10, 5, 100, {}), 5u);
  RouterLimits capped;
  capped.max_tokens_cap = 32;
  EXPECT_EQ(*ResolveMaxTokens(10, std::nullopt, 100, capped), 32u);
}

TEST(ResolveMaxTokens, ADefaultIsCutToTheRoomAndTheCapNeverRefused) {
  EXPECT_EQ(*ResolveMaxTokens(10, std::nullopt, 100, {}, 16), 16u);
  EXPECT_EQ(*ResolveMaxTokens(95, std::nullopt, 100, {}, 16), 5u);
  EXPECT_EQ(*ResolveMaxTokens(10, 40, 100, {}, 16), 40u);  // what the client asks wins
  RouterLimits capped;
  capped.max_tokens_cap = 8;
  EXPECT_EQ(*ResolveMaxTokens(10, std::nullopt, 100, capped, 16), 8u);
}

TEST(ResolveMaxTokens, RejectsPromptsThatDoNotFit) {
  absl::StatusOr<uint32_t> r = ResolveMaxTokens(100, std::nullopt, 100, {});
  ASSERT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_EQ(ParamOf(r.status()), "prompt");
  EXPECT_NE(std::string(r.status().message()).find("context length is 100"), std::string::npos);

  r = ResolveMaxTokens(60, 50, 100, {});
  ASSERT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_EQ(ParamOf(r.status()), "max_tokens");

  RouterLimits limits;
  limits.max_prompt_tokens = 8;
  r = ResolveMaxTokens(9, 1, 100, limits);
  ASSERT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(std::string(r.status().message()).find("at most 8"), std::string::npos);

  limits.max_tokens_cap = 4;
  EXPECT_TRUE(absl::IsInvalidArgument(ResolveMaxTokens(2, 5, 100, limits).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ResolveMaxTokens(0, 5, 100, {}).status()));
}

}  // namespace
}  // namespace expertmesh::router
