// Issue 15, finding 3: the router mints every worker request id; a client's request_id is
// only echoed back to that client.
#include <set>
#include <string>

#include "model/request/request_id.h"
#include "tests/router/grpc_call.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

namespace pb = ::expertmesh::v1;

class RequestIdTest : public RouterFixture {};

// Before: the worker key was "<client id>-0", so a second client sending the same id could
// abort (or block) the first one's request on the worker.
TEST_F(RequestIdTest, GrpcClientIdIsEchoedButNeverTheWorkerKey) {
  StartWorkers(1);
  StartRouter();
  pb::GenerateRequest req;
  req.set_text("whose request is this");
  req.mutable_stop()->set_max_tokens(3);
  req.set_request_id("victim-id");
  std::set<std::string> worker_keys;
  for (int i = 0; i < 2; ++i) {
    GenerateCall call = RunGenerate(*Grpc(), req);
    ASSERT_TRUE(call.status.ok()) << call.status.error_message();
    for (const pb::GenerateResponse& m : call.messages) EXPECT_EQ(m.request_id(), "victim-id");
    const std::string key = workers_[0]->last_request().request_id();
    EXPECT_TRUE(model::IsRouterRequestId(key)) << key;
    EXPECT_EQ(key.find("victim"), std::string::npos) << key;
    worker_keys.insert(key);
  }
  EXPECT_EQ(worker_keys.size(), 2u);  // the same client id, two different worker keys

  // Without a client id the echo is a fresh public id, unrelated to the worker key.
  req.clear_request_id();
  GenerateCall call = RunGenerate(*Grpc(), req);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  const std::string shown = call.last().request_id();
  const std::string key = workers_[0]->last_request().request_id();
  EXPECT_FALSE(shown.empty());
  EXPECT_EQ(key.find(shown), std::string::npos);
  EXPECT_EQ(shown.find(key.substr(model::kRequestIdPrefix.size(), 32)), std::string::npos);
}

// Before: ids were "req-<counter>-<fixed salt>", so the next ones were predictable.
TEST_F(RequestIdTest, IdsAreRandomAndUnrelated) {
  StartWorkers(1);
  StartRouter();
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string internal = router_->core().NewRequestId();
    const std::string shown = router_->core().NewPublicId();
    EXPECT_TRUE(model::IsRouterRequestId(internal)) << internal;
    EXPECT_FALSE(model::IsRouterRequestId(shown)) << shown;
    EXPECT_EQ(shown.size(), 32u);
    EXPECT_TRUE(seen.insert(internal).second);
    EXPECT_TRUE(seen.insert(shown).second);
  }
  // No shared prefix beyond "rq-" between consecutive ids (a counter or a salt would show).
  const std::string a = router_->core().NewRequestId();
  const std::string b = router_->core().NewRequestId();
  EXPECT_NE(a.substr(3, 8), b.substr(3, 8));
}

TEST(RouterRequestIdFormat, AcceptsOnlyWhatRoutersMint) {
  const std::string hex(32, 'a');
  EXPECT_TRUE(model::IsRouterRequestId("rq-" + hex));
  EXPECT_TRUE(model::IsRouterRequestId("rq-" + hex + "-0"));
  EXPECT_TRUE(model::IsRouterRequestId("rq-" + hex + "-15-r2"));
  EXPECT_FALSE(model::IsRouterRequestId("rq-" + hex.substr(1)));
  EXPECT_FALSE(model::IsRouterRequestId("rq-" + std::string(32, 'A')));
  EXPECT_FALSE(model::IsRouterRequestId("rq-" + hex + "x"));
  EXPECT_FALSE(model::IsRouterRequestId("rq-" + hex + "-" + std::string(40, '1')));
  EXPECT_FALSE(model::IsRouterRequestId("victim-id-0"));
  EXPECT_FALSE(model::IsRouterRequestId("req-1-abc"));
  EXPECT_FALSE(model::IsRouterRequestId(""));
}

}  // namespace
}  // namespace expertmesh::router::testing
