// Issue 15, finding 2: request bodies are parsed with a nesting limit checked while parsing,
// and every integer is range-checked before it is narrowed.
#include <cstdint>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/json_body.h"
#include "router/openai_request.h"
#include "router/request_validation.h"

namespace expertmesh::router {
namespace {

using ::testing::HasSubstr;

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// Before: nlohmann's recursive DOM code overflowed the stack (SIGSEGV) on this 160 KB body.
TEST(SecurityParsing, EightyThousandNestedArraysAreA400NotACrash) {
  for (const std::string& body :
       {Nested(80000), "{\"prompt\": " + Nested(80000) + "}",
        "{\"messages\": [{\"role\": \"user\", \"content\": " + Nested(80000) + "}]}"}) {
    absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(body, /*chat=*/true);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("deeper than 64"));
  }
}

TEST(SecurityParsing, DepthLimitIsExact) {
  EXPECT_TRUE(ParseJsonBody(Nested(kMaxJsonDepth)).ok());
  EXPECT_FALSE(ParseJsonBody(Nested(kMaxJsonDepth + 1)).ok());
  EXPECT_FALSE(ParseJsonBody("{\"a\": " + Nested(kMaxJsonDepth) + "}").ok());
  absl::StatusOr<nlohmann::ordered_json> bad = ParseJsonBody("{\"a\": [1, 2,}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("column 13"));
}

// Before: 4294967297 was read as token id 1 (and as top_k 1).
TEST(SecurityParsing, IntegersOutsideTheirTypeAreRefusedNotWrapped) {
  struct Case {
    std::string body;
    std::string param;
  };
  const Case cases[] = {
      {R"({"prompt": [4294967297]})", "prompt"},
      {R"({"prompt": [1, -1]})", "prompt"},
      {R"({"prompt": "x", "stop_token_ids": [4294967297]})", "stop_token_ids"},
      {R"({"prompt": "x", "top_k": 4294967297})", "top_k"},
      {R"({"prompt": "x", "max_tokens": 18446744073709551615})", "max_tokens"},
      {R"({"prompt": "x", "n": 18446744073709551615})", "n"},
      {R"({"prompt": "x", "logprobs": 18446744073709551615})", "logprobs"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(c.body, /*chat=*/false);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_EQ(ParamOf(r.status()), c.param) << c.body;
  }
  absl::StatusOr<OpenAiRequest> ok = ParseOpenAiRequest(
      R"({"prompt": [2147483647, 0], "top_k": -1, "seed": 18446744073709551615})",
      /*chat=*/false);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->input.token_ids, (std::vector<int32_t>{2147483647, 0}));
  EXPECT_EQ(ok->params.top_k, -1);
  EXPECT_EQ(ok->params.seed, std::numeric_limits<uint64_t>::max());
}

// Before: prompt + max_tokens overflowed int64 and the request passed the context check.
TEST(SecurityParsing, HugeMaxTokensIsRefusedWithoutOverflow) {
  const int64_t huge = std::numeric_limits<int64_t>::max();
  absl::StatusOr<uint32_t> r = ResolveMaxTokens(10, huge, 2048, RouterLimits{});
  ASSERT_FALSE(r.ok()) << *r;
  EXPECT_EQ(ParamOf(r.status()), "max_tokens");
  absl::StatusOr<OpenAiRequest> parsed =
      ParseOpenAiRequest(R"({"prompt": "x", "max_tokens": 9223372036854775807})", false);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(ResolveMaxTokens(1, parsed->params.max_tokens, 4096, RouterLimits{}).ok());
  EXPECT_EQ(*ResolveMaxTokens(10, 2038, 2048, RouterLimits{}), 2038u);
}

}  // namespace
}  // namespace expertmesh::router
