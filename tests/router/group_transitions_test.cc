// A worker group going down and coming back, as the router reports it: each transition is
// logged once with its reason (a failed stream, a health check's answer, probes without an
// answer), however many requests and polls see the group down; a down group's gauges in
// /metrics read 0 instead of its last report and are filled again from the restarted group's
// reports; a stream on the healthy group goes on untouched; and a group restarted at the same
// address takes requests again without restarting the router.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

using ::testing::HasSubstr;
namespace pb = ::expertmesh::v1;

// Keeps every line logged through spdlog's default logger while alive (and still prints them).
class LogCapture : public spdlog::sinks::base_sink<std::mutex> {
 public:
  static std::shared_ptr<LogCapture> Install() {
    auto capture = std::make_shared<LogCapture>();
    capture->previous_ = spdlog::default_logger();
    std::vector<spdlog::sink_ptr> sinks = capture->previous_->sinks();
    sinks.push_back(capture);
    auto logger = std::make_shared<spdlog::logger>("capture", sinks.begin(), sinks.end());
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
    return capture;
  }
  void Uninstall() { spdlog::set_default_logger(previous_); }

  // Lines that contain every one of `parts`.
  std::vector<std::string> Matching(const std::vector<std::string>& parts) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const std::string& l : lines_) {
      bool all = true;
      for (const std::string& p : parts) all = all && l.find(p) != std::string::npos;
      if (all) out.push_back(l);
    }
    return out;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::vector<std::string> lines_;  // guarded by base_sink's mutex_
};

class GroupTransitionsTest : public RouterFixture {
 protected:
  void SetUp() override { log_ = LogCapture::Install(); }
  void TearDown() override {
    RouterFixture::TearDown();
    log_->Uninstall();
  }

  void StartRoundRobin() {
    StartRouter([](RouterServerOptions& o) { o.pool.routing.mode = RoutingMode::kRoundRobin; });
  }
  size_t Downs(const std::string& address) {
    return log_->Matching({"worker group " + address + " is down"}).size();
  }
  size_t Ups(const std::string& address) {
    return log_->Matching({"worker group " + address + " is up"}).size();
  }
  // The value of `gauge` for `address` in /metrics, or -1 when absent.
  double Gauge(const std::string& gauge, const std::string& address) {
    const std::string metrics = Http()->Get("/metrics")->body;
    const std::string key = absl::StrCat(gauge, "{group=\"", address, "\"} ");
    const size_t at = metrics.find(key);
    if (at == std::string::npos) return -1;
    const size_t start = at + key.size();
    double value = -1;
    if (!absl::SimpleAtod(metrics.substr(start, metrics.find('\n', start) - start), &value)) {
      return -1;
    }
    return value;
  }

  std::shared_ptr<LogCapture> log_;
};

TEST_F(GroupTransitionsTest, AKilledGroupIsLoggedDownOnceZeroedAndBackWhenRestarted) {
  StartWorkers(2);
  for (auto& w : workers_) w->SetTokenDelay(absl::Milliseconds(10));
  workers_[0]->SetReportedQueue(5);
  StartRoundRobin();
  const std::string a = workers_[0]->address();
  const std::string b = workers_[1]->address();
  EXPECT_EQ(Ups(a), 1u);  // the first probe
  EXPECT_EQ(Downs(a), 0u);

  // One long stream on each group (round robin).
  pb::GenerateRequest req;
  req.set_text("a stream that outlives the other group");
  req.mutable_stop()->set_max_tokens(3000);  // 30 s at 10 ms a token: cancelled at the end
  auto stub = Grpc();
  grpc::ClientContext ctx_first, ctx_second;
  auto first = stub->Generate(&ctx_first, req);
  auto second = stub->Generate(&ctx_second, req);
  pb::GenerateResponse msg;
  ASSERT_TRUE(first->Read(&msg));
  ASSERT_TRUE(second->Read(&msg));
  ASSERT_EQ(workers_[0]->active(), 1);
  ASSERT_EQ(workers_[1]->active(), 1);
  router_->pool().PollOnce();
  EXPECT_EQ(Gauge("expertmesh_worker_group_up", a), 1);
  EXPECT_EQ(Gauge("expertmesh_worker_group_queued_requests", a), 5);
  EXPECT_EQ(Gauge("expertmesh_worker_group_running_requests", a), 1);
  EXPECT_GT(Gauge("expertmesh_worker_group_kv_usage_ratio", a), 0);
  EXPECT_GT(Gauge("expertmesh_worker_group_free_kv_blocks", a), 0);

  // Group A dies under its stream: the stream fails, which takes the group out at once.
  const int port = workers_[0]->port();
  workers_[0]->Shutdown();
  // Read both streams until one ends: that one was on A; the one on B goes on.
  grpc::ClientReader<pb::GenerateResponse>* dead = nullptr;
  grpc::ClientReader<pb::GenerateResponse>* live = nullptr;
  grpc::ClientContext* live_context = nullptr;
  while (dead == nullptr) {
    if (!first->Read(&msg)) {
      dead = first.get();
      live = second.get();
      live_context = &ctx_second;
    } else if (!second->Read(&msg)) {
      dead = second.get();
      live = first.get();
      live_context = &ctx_first;
    }
  }
  const grpc::Status dead_status = dead->Finish();
  EXPECT_EQ(dead_status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(dead_status.error_message(), HasSubstr("failed after"));
  const std::vector<std::string> down = log_->Matching({"worker group " + a + " is down"});
  ASSERT_EQ(down.size(), 1u);
  EXPECT_THAT(down[0], HasSubstr("a stream failed: UNAVAILABLE"));

  // More probes and requests see it down: no more lines, and nothing is routed to it.
  for (int i = 0; i < 3; ++i) router_->pool().PollOnce();
  for (int i = 0; i < 4; ++i) {
    httplib::Result r = Post("/v1/completions", {{"prompt", "while A is down"}, {"max_tokens", 2}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  EXPECT_EQ(Downs(a), 1u);
  EXPECT_EQ(Gauge("expertmesh_worker_group_up", a), 0);
  EXPECT_EQ(Gauge("expertmesh_worker_group_queued_requests", a), 0);
  EXPECT_EQ(Gauge("expertmesh_worker_group_running_requests", a), 0);
  EXPECT_EQ(Gauge("expertmesh_worker_group_kv_usage_ratio", a), 0);
  EXPECT_EQ(Gauge("expertmesh_worker_group_free_kv_blocks", a), 0);
  EXPECT_EQ(Gauge("expertmesh_worker_group_router_inflight", a), 0);
  // B is untouched: still up, its stream still running.
  EXPECT_EQ(Gauge("expertmesh_worker_group_up", b), 1);
  EXPECT_EQ(Gauge("expertmesh_worker_group_running_requests", b), 1);
  EXPECT_EQ(Downs(b), 0u);
  ASSERT_TRUE(live->Read(&msg));

  // A comes back at the same address (a restart): the next poll takes it in again.
  absl::StatusOr<std::unique_ptr<FakeWorker>> back =
      FakeWorker::Start(absl::StrCat("127.0.0.1:", port));
  ASSERT_TRUE(back.ok()) << back.status();
  workers_[0] = *std::move(back);
  workers_[0]->SetReportedQueue(7);
  router_->pool().PollOnce();
  router_->pool().PollOnce();
  const std::vector<std::string> up = log_->Matching({"worker group " + a + " is up again"});
  ASSERT_EQ(up.size(), 1u);
  EXPECT_THAT(up[0], HasSubstr("down (a stream failed: UNAVAILABLE"));
  EXPECT_EQ(Ups(a), 2u);
  EXPECT_EQ(Downs(a), 1u);
  EXPECT_EQ(Gauge("expertmesh_worker_group_up", a), 1);
  EXPECT_EQ(Gauge("expertmesh_worker_group_queued_requests", a), 7);
  EXPECT_EQ(Gauge("expertmesh_worker_group_free_kv_blocks", a), 1024);
  for (int i = 0; i < 4; ++i) {
    httplib::Result r = Post("/v1/completions", {{"prompt", "A is back"}, {"max_tokens", 2}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  EXPECT_EQ(workers_[0]->submitted(), 2);  // round robin over both again

  // The stream on B never noticed.
  ASSERT_TRUE(live->Read(&msg));
  live_context->TryCancel();
  while (live->Read(&msg)) {
  }
  EXPECT_EQ(live->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(GroupTransitionsTest, HealthCheckTransitionsAreLoggedOnceWithTheirReason) {
  StartWorkers(2);
  StartRoundRobin();
  const std::string b = workers_[1]->address();
  workers_[1]->SetReportedQueue(3);
  router_->pool().PollOnce();
  EXPECT_EQ(Gauge("expertmesh_worker_group_queued_requests", b), 3);

  // Draining (NOT_SERVING): out at the first answer.
  workers_[1]->SetHealthy(false);
  for (int i = 0; i < 3; ++i) router_->pool().PollOnce();
  std::vector<std::string> down = log_->Matching({"worker group " + b + " is down"});
  ASSERT_EQ(down.size(), 1u);
  EXPECT_THAT(down[0], HasSubstr("health check answered NOT_SERVING"));
  EXPECT_EQ(Gauge("expertmesh_worker_group_queued_requests", b), 0);
  workers_[1]->SetHealthy(true);
  for (int i = 0; i < 3; ++i) router_->pool().PollOnce();
  EXPECT_EQ(log_->Matching({"worker group " + b + " is up again", "NOT_SERVING"}).size(), 1u);
  EXPECT_EQ(Gauge("expertmesh_worker_group_queued_requests", b), 3);

  // Gone without a word: out at the second probe without an answer, logged once.
  workers_[1]->Shutdown();
  router_->pool().PollOnce();
  EXPECT_EQ(Downs(b), 1u);  // one miss is not enough
  for (int i = 0; i < 3; ++i) router_->pool().PollOnce();
  down = log_->Matching({"worker group " + b + " is down"});
  ASSERT_EQ(down.size(), 2u);
  EXPECT_THAT(down[1], HasSubstr("health check failed"));
  EXPECT_THAT(down[1], HasSubstr("(2 probes in a row)"));
  EXPECT_EQ(Gauge("expertmesh_worker_group_queued_requests", b), 0);
  EXPECT_EQ(Gauge("expertmesh_worker_group_free_kv_blocks", b), 0);
  EXPECT_EQ(Ups(workers_[0]->address()), 1u);  // the other group: up once, at the start
  EXPECT_EQ(Downs(workers_[0]->address()), 0u);
}

}  // namespace
}  // namespace expertmesh::router::testing
