// Issue 15, low items and finding 6: API key checks and the tenant's prefix-cache salt.
#include "router/api_keys.h"
#include "common/grpc_credentials.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace expertmesh::router {
namespace {

using ::testing::HasSubstr;

TEST(ApiKeys, BearerSchemeIsCaseInsensitive) {
  const ApiKeys keys({"sk-right"});
  EXPECT_TRUE(keys.Check("Bearer sk-right").ok());
  EXPECT_TRUE(keys.Check("bearer sk-right").ok());  // before: refused
  EXPECT_TRUE(keys.Check("BEARER  sk-right ").ok());
  EXPECT_EQ(keys.Check("Bearer sk-wrong").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys.Check("Bearer sk-righ").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys.Check("Bearer sk-right-and-more").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys.Check("Bearersk-right").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys.Check("Basic sk-right").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys.Check("").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(ApiKeys().Check("").ok());
}

// Before: a set but blank variable silently turned authentication off.
TEST(ApiKeys, BlankEnvironmentVariableIsAnError) {
  for (const char* blank : {"", " ", " , ,"}) {
    ASSERT_EQ(setenv("EXPERTMESH_TEST_KEYS", blank, 1), 0);
    absl::StatusOr<ApiKeys> keys = ApiKeys::Load("", "EXPERTMESH_TEST_KEYS");
    ASSERT_FALSE(keys.ok()) << "'" << blank << "'";
    EXPECT_THAT(keys.status().message(), HasSubstr("EXPERTMESH_TEST_KEYS"));
  }
  ASSERT_EQ(setenv("EXPERTMESH_TEST_KEYS", "a, b", 1), 0);
  absl::StatusOr<ApiKeys> keys = ApiKeys::Load("", "EXPERTMESH_TEST_KEYS");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE(keys->Check("Bearer b").ok());
  ASSERT_EQ(unsetenv("EXPERTMESH_TEST_KEYS"), 0);
  keys = ApiKeys::Load("", "EXPERTMESH_TEST_KEYS");
  ASSERT_TRUE(keys.ok());
  EXPECT_FALSE(keys->enabled());
}

TEST(ApiKeys, TenantSaltSeparatesKeysAndNeverRevealsThem) {
  ApiKeys keys({"sk-alice", "sk-bob"});
  const std::string alice = keys.TenantSalt("Bearer sk-alice");
  const std::string bob = keys.TenantSalt("bearer sk-bob");
  EXPECT_EQ(alice.size(), 32u);
  EXPECT_NE(alice, bob);
  EXPECT_EQ(alice, keys.TenantSalt("Bearer  sk-alice "));
  EXPECT_EQ(alice.find("sk-alice"), std::string::npos);
  // Auth off, or the shared cache chosen: one cache for all.
  EXPECT_EQ(ApiKeys().TenantSalt("Bearer sk-alice"), "");
  keys.set_shared_prefix_cache(true);
  EXPECT_EQ(keys.TenantSalt("Bearer sk-alice"), "");
}

// Before: --tls-key without --tls-cert left gRPC plaintext without a word.
TEST(GrpcCredentials, HalfATlsPairIsAnError) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> c = GrpcServerCredentials("", "k.pem");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("--tls-cert"));
  c = GrpcServerCredentials("c.pem", "");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("--tls-key"));
  c = GrpcServerCredentials("/nonexistent/c.pem", "/nonexistent/k.pem");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/c.pem"));
  EXPECT_TRUE(GrpcServerCredentials("", "").ok());
}

}  // namespace
}  // namespace expertmesh::router
