// Issue 15, finding 6: each API key has its own prefix cache, so cached_prompt_tokens tells a
// tenant only about its own earlier prompts.
#include <string>

#include "tests/router/grpc_call.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

namespace pb = ::expertmesh::v1;

class TenantCacheTest : public RouterFixture {
 protected:
  uint32_t CachedTokens(const std::string& key) {
    pb::GenerateRequest req;
    req.set_text(prompt_);
    req.mutable_stop()->set_max_tokens(1);
    GenerateCall call = RunGenerate(*Grpc(), req, "Bearer " + key);
    EXPECT_TRUE(call.status.ok()) << call.status.error_message();
    return call.messages.empty() ? 0 : call.last().usage().cached_prompt_tokens();
  }

  // The same over HTTP: usage.prompt_tokens_details.cached_tokens.
  uint32_t HttpCachedTokens(const std::string& key) {
    httplib::Result r = Post("/v1/completions", {{"prompt", prompt_}, {"max_tokens", 1}}, key);
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    if (!r || r->status != 200) return 0;
    const nlohmann::json body = nlohmann::json::parse(r->body);
    return body["usage"].value("/prompt_tokens_details/cached_tokens"_json_pointer, 0u);
  }

  // Long enough for several 16-token blocks.
  const std::string prompt_ =
      "The secret code word of the night shift is pelican, and nobody else may know it. "
      "Remember it well, repeat it to no one, and write it down nowhere at all please.";
};

// Before: bob's first request reported alice's cached blocks (a shared cache).
TEST_F(TenantCacheTest, OneTenantNeverHitsAnothersCache) {
  StartWorkers(1);
  StartRouter([](RouterServerOptions& o) { o.api_keys = ApiKeys({"sk-alice", "sk-bob"}); });
  EXPECT_EQ(CachedTokens("sk-alice"), 0u);
  EXPECT_GT(CachedTokens("sk-alice"), 0u);  // alice's own cache works
  EXPECT_EQ(CachedTokens("sk-bob"), 0u);
  EXPECT_GT(CachedTokens("sk-bob"), 0u);
  EXPECT_NE(workers_[0]->last_request().cache_salt(), "");
}

TEST_F(TenantCacheTest, HttpTenantsAreKeptApartToo) {
  StartWorkers(1);
  StartRouter([](RouterServerOptions& o) { o.api_keys = ApiKeys({"sk-alice", "sk-bob"}); });
  EXPECT_EQ(HttpCachedTokens("sk-alice"), 0u);
  EXPECT_GT(HttpCachedTokens("sk-alice"), 0u);
  EXPECT_EQ(HttpCachedTokens("sk-bob"), 0u);
  EXPECT_NE(workers_[0]->last_request().cache_salt(), "");
}

TEST_F(TenantCacheTest, SharedCacheIsOptIn) {
  StartWorkers(1);
  StartRouter([](RouterServerOptions& o) {
    o.api_keys = ApiKeys({"sk-alice", "sk-bob"});
    o.api_keys.set_shared_prefix_cache(true);
  });
  EXPECT_EQ(CachedTokens("sk-alice"), 0u);
  EXPECT_GT(CachedTokens("sk-bob"), 0u);
  EXPECT_EQ(workers_[0]->last_request().cache_salt(), "");
}

}  // namespace
}  // namespace expertmesh::router::testing
