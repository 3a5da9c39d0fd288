// Faults and routing with several fake groups: retry before the first token, a group dying
// mid-stream, a group killed and brought back, health-check driven removal, mass cancellation,
// prefix affinity, DNS discovery and graceful shutdown.
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

using nlohmann::json;
namespace pb = ::expertmesh::v1;

class FaultsTest : public RouterFixture {
 protected:
  void StartRoundRobin() {
    StartRouter([](RouterServerOptions& o) { o.pool.routing.mode = RoutingMode::kRoundRobin; });
  }
  bool Healthy(size_t group) { return router_->pool().Groups()[group]->State().healthy; }
  int Complete(const std::string& prompt, int max_tokens = 3) {
    httplib::Result r = Post("/v1/completions", {{"prompt", prompt}, {"max_tokens", max_tokens}});
    return r ? r->status : -1;
  }
};

TEST_F(FaultsTest, FailureBeforeTheFirstTokenRetriesOnAnotherGroup) {
  StartWorkers(2);
  StartRoundRobin();
  workers_[0]->FailBeforeFirstToken(1);
  httplib::Result r = Post("/v1/completions", {{"prompt", "retry me"}, {"max_tokens", 2}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(workers_[0]->submitted(), 1);
  EXPECT_EQ(workers_[1]->submitted(), 1);
  EXPECT_FALSE(Healthy(0));  // marked down at once
  router_->pool().PollOnce();
  EXPECT_TRUE(Healthy(0));  // it answers health checks again
  EXPECT_NE(Http()->Get("/metrics")->body.find("expertmesh_router_retries_total 1"),
            std::string::npos);
}

TEST_F(FaultsTest, DeathMidStreamEndsWithAClearErrorAndTheGroupIsTakenOut) {
  StartWorkers(2);
  StartRoundRobin();
  workers_[0]->DieAfterTokens(3);
  httplib::Result r =
      Post("/v1/completions", {{"prompt", "a b c d e f g h"}, {"max_tokens", 8}, {"stream", true}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  bool done = false;
  std::vector<json> events = ParseSse(r->body, &done);
  EXPECT_TRUE(done);
  ASSERT_FALSE(events.empty());
  ASSERT_TRUE(events.back().contains("error")) << r->body;
  const std::string message = events.back()["error"]["message"];
  EXPECT_NE(message.find("failed after 3 tokens"), std::string::npos) << message;
  // Which group failed is for the operator's log, not for the client.
  EXPECT_EQ(message.find(workers_[0]->address()), std::string::npos) << message;
  EXPECT_FALSE(Healthy(0));
  // New requests go to the other group.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Complete("next"), 200);
  EXPECT_EQ(workers_[1]->submitted(), 3);
  EXPECT_EQ(workers_[0]->submitted(), 1);
}

TEST_F(FaultsTest, KilledGroupIsRemovedAndReturnsWhenRestarted) {
  StartWorkers(2);
  StartRoundRobin();
  const int port = workers_[0]->port();
  workers_[0]->Shutdown();
  router_->pool().PollOnce();
  EXPECT_TRUE(Healthy(0));  // one probe without an answer is not enough
  router_->pool().PollOnce();
  EXPECT_FALSE(Healthy(0));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Complete("while down"), 200);
  EXPECT_EQ(workers_[1]->submitted(), 4);

  absl::StatusOr<std::unique_ptr<FakeWorker>> back =
      FakeWorker::Start("127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(back.ok()) << back.status();
  workers_[0] = *std::move(back);
  router_->pool().PollOnce();
  EXPECT_TRUE(Healthy(0));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Complete("back again"), 200);
  EXPECT_EQ(workers_[0]->submitted(), 2);
}

TEST_F(FaultsTest, HealthCheckTakesAGroupOutAndPutsItBack) {
  StartWorkers(2);
  StartRoundRobin();
  workers_[1]->SetHealthy(false);
  router_->pool().PollOnce();
  EXPECT_FALSE(Healthy(1));
  EXPECT_EQ(Complete("x"), 200);
  EXPECT_EQ(Complete("y"), 200);
  EXPECT_EQ(workers_[1]->submitted(), 0);
  workers_[1]->SetHealthy(true);
  router_->pool().PollOnce();
  EXPECT_TRUE(Healthy(1));
  workers_[0]->SetHealthy(false);
  workers_[1]->SetHealthy(false);
  router_->pool().PollOnce();
  EXPECT_EQ(Complete("z"), 503);
  EXPECT_EQ(Http()->Get("/readyz")->status, 503);
}

TEST_F(FaultsTest, FiftyCancelledStreamsReturnTheKvPoolToFull) {
  StartWorkers(2);
  for (auto& w : workers_) w->SetTokenDelay(absl::Milliseconds(20));
  StartRouter();
  constexpr int kStreams = 50;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>>> readers;
  auto stub = Grpc();
  pb::GenerateRequest req;
  req.set_text("cancel this stream in flight");
  req.mutable_stop()->set_max_tokens(2000);
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub->Generate(contexts.back().get(), req));
  }
  pb::GenerateResponse msg;
  for (auto& r : readers) ASSERT_TRUE(r->Read(&msg));  // all are generating
  EXPECT_EQ(workers_[0]->active() + workers_[1]->active(), kStreams);
  EXPECT_GT(workers_[0]->active(), 0);  // spread over both groups
  EXPECT_GT(workers_[1]->active(), 0);
  for (auto& c : contexts) c->TryCancel();
  for (auto& r : readers) {
    while (r->Read(&msg)) {
    }
    EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  for (auto& w : workers_) {
    ASSERT_TRUE(w->WaitFor([](const FakeWorker& f) { return f.active() == 0; }, absl::Seconds(30)));
    EXPECT_EQ(w->free_kv_blocks(), 1024u);
  }
  EXPECT_EQ(workers_[0]->cancelled() + workers_[1]->cancelled(), kStreams);
  // The router releases its slots once its abort bookkeeping ends, just after the workers.
  EXPECT_TRUE(router_->core().admission().WaitIdle(absl::Seconds(30)));
}

TEST_F(FaultsTest, SharedPrefixesFollowTheCache) {
  StartWorkers(2);
  StartRouter();
  std::string system;
  for (int i = 0; i < 40; ++i) system += "shared system prompt words " + std::to_string(i) + " ";
  ASSERT_EQ(Complete(system + "first user"), 200);
  const int first = workers_[0]->submitted() == 1 ? 0 : 1;
  router_->pool().PollOnce();  // picks up the cached prefix hashes
  for (int i = 0; i < 6; ++i) {
    httplib::Result r = Post("/v1/completions",
                             {{"prompt", system + "user " + std::to_string(i)}, {"max_tokens", 2}});
    ASSERT_EQ(r->status, 200);
    EXPECT_GT(json::parse(r->body)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  }
  EXPECT_EQ(workers_[first]->submitted(), 7);
  EXPECT_EQ(workers_[1 - first]->submitted(), 0);
  // Without the shared prefix, equal load spreads over both.
  for (int i = 0; i < 4; ++i) ASSERT_EQ(Complete("unrelated " + std::to_string(i)), 200);
  EXPECT_GT(workers_[1 - first]->submitted(), 0);
}

TEST_F(FaultsTest, DnsNameResolvesToGroups) {
  StartWorkers(1);
  const int port = workers_[0]->port();
  StartRouter([port](RouterServerOptions& o) {
    o.pool.targets = {"dns:///localhost:" + std::to_string(port)};
  });
  std::vector<std::string> addresses;
  for (auto& g : router_->pool().Groups()) addresses.push_back(g->address());
  EXPECT_THAT(addresses, ::testing::Contains("127.0.0.1:" + std::to_string(port)));
  EXPECT_EQ(Complete("via dns"), 200);
  EXPECT_TRUE(absl::IsInvalidArgument(ResolveTarget("dns:///nohost").status()));
}

TEST_F(FaultsTest, GracefulShutdownDrainsInFlightStreams) {
  StartWorkers(1);
  workers_[0]->SetTokenDelay(absl::Milliseconds(2));
  StartRouter();
  pb::GenerateRequest req;
  req.set_text("drain me");
  req.mutable_stop()->set_max_tokens(300);
  auto stub = Grpc();
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, req);
  pb::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  int cut = -1;
  std::thread shutdown([&] { cut = router_->Shutdown(absl::Seconds(60)); });
  uint32_t completion = 0;
  while (reader->Read(&msg)) completion = msg.usage().completion_tokens();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(completion, 300u);
  shutdown.join();
  EXPECT_EQ(cut, 0);
  EXPECT_TRUE(router_->core().draining());
}

}  // namespace
}  // namespace expertmesh::router::testing
