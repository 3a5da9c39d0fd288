// The attacks of the security review (issue: "Security of the front door"), replayed against
// a real router in front of fake workers: each asserts the defended outcome, and the ones
// about memory print the router's resident set (this process) before and after.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/router/http/raw_client.h"
#include "tests/router/router_fixture.h"

namespace expertmesh::router::testing {
namespace {

using json = nlohmann::json;

class HttpAttacksTest : public RouterFixture {
 protected:
  // A complete request head for POST /v1/completions.
  static std::string Head(const std::string& extra, const std::string& key = "sk-good") {
    std::string head = "POST /v1/completions HTTP/1.1\r\nHost: router\r\n";
    if (!key.empty()) absl::StrAppend(&head, "Authorization: Bearer ", key, "\r\n");
    return absl::StrCat(head, "Content-Type: application/json\r\n", extra, "\r\n");
  }
  void StartKeyed(const std::function<void(RouterServerOptions&)>& edit = {}) {
    StartWorkers(1);
    StartRouter([&](RouterServerOptions& o) {
      o.api_keys = ApiKeys({"sk-good"});
      if (edit) edit(o);
    });
  }
  int Complete(const std::string& key = "sk-good") {
    httplib::Result r = Post("/v1/completions", {{"prompt", "hello"}, {"max_tokens", 2}}, key);
    return r ? r->status : 0;
  }
};

// Finding 1: a 64 MiB chunked body was read whole (the limit applied to Content-Length only).
TEST_F(HttpAttacksTest, ChunkedBodyPastTheLimitIsCutAndNotBuffered) {
  StartKeyed();
  const size_t rss_before = ResidentBytes();
  for (int attempt = 0; attempt < 5; ++attempt) {
    RawClient c(router_->http_port());
    ASSERT_TRUE(c.Send(Head("Transfer-Encoding: chunked\r\n")));
    const std::string chunk = absl::StrCat("100000\r\n", std::string(1 << 20, 'a'), "\r\n");
    size_t sent = 0;
    while (sent < (64u << 20) && c.Send(chunk)) sent += 1 << 20;
    EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(10))), 413);
    EXPECT_LT(sent, 32u << 20);
  }
  const size_t rss_after = ResidentBytes();
  std::printf("router RSS: %.1f MiB before, %.1f MiB after five 64 MiB chunked bodies\n",
              rss_before / 1048576.0, rss_after / 1048576.0);
  EXPECT_LT(rss_after, rss_before + (32u << 20));
  EXPECT_EQ(Complete(), 200);
  EXPECT_EQ(workers_[0]->submitted(), 1);
}

// Finding 1: a 261 KB gzip body from a client without a key inflated to 256 MiB before the 401.
// Now the key is checked from the head and compressed bodies are refused unread.
TEST_F(HttpAttacksTest, CompressedBodyIsNeverInflated) {
  StartKeyed();
  const size_t rss_before = ResidentBytes();
  const std::string body(261 * 1024, '\x1f');  // the bytes do not matter: none is read
  for (const std::string key : {"", "sk-good"}) {
    RawClient c(router_->http_port());
    ASSERT_TRUE(c.Send(Head(
        absl::StrCat("Content-Encoding: gzip\r\nContent-Length: ", body.size(), "\r\n"), key)));
    c.Send(body);
    EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(10))), key.empty() ? 401 : 415);
  }
  std::printf("router RSS: %.1f MiB before, %.1f MiB after gzip bodies\n", rss_before / 1048576.0,
              ResidentBytes() / 1048576.0);
  EXPECT_LT(ResidentBytes(), rss_before + (16u << 20));
  EXPECT_EQ(Complete(), 200);
}

// Finding 2 (its memory side): 80,000 nested arrays in 160 KB once crashed the router; now a
// 400 from the depth limit, and the router's memory stays where it was.
TEST_F(HttpAttacksTest, DeeplyNestedJsonIsA400WithFlatMemory) {
  StartKeyed();
  const size_t rss_before = ResidentBytes();
  const std::string body =
      absl::StrCat(R"({"prompt":)", std::string(80000, '['), std::string(80000, ']'), "}");
  for (int i = 0; i < 20; ++i) {
    httplib::Headers keyed = {{"Authorization", "Bearer sk-good"}};
    httplib::Result r = Http()->Post("/v1/completions", keyed, body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
  }
  std::printf("router RSS: %.1f MiB before, %.1f MiB after 20 nested-JSON bodies\n",
              rss_before / 1048576.0, ResidentBytes() / 1048576.0);
  EXPECT_LT(ResidentBytes(), rss_before + (16u << 20));
  EXPECT_EQ(Complete(), 200);
}

// Finding 4: 300 connections sending a header line every 2 s made every request time out.
TEST_F(HttpAttacksTest, SlowHeaderFloodLeavesOtherClientsServed) {
  // Fewer generation slots than attackers, as under `expertmesh serve`: a server that gives a
  // thread to every connection has none left for real clients.
  StartKeyed([](RouterServerOptions& o) { o.core.max_active = 64; });
  auto p99 = [this](int n) {
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      const absl::Time start = absl::Now();
      auto client = Http();
      client->set_connection_timeout(5, 0);
      client->set_read_timeout(5, 0);
      httplib::Headers keyed = {{"Authorization", "Bearer sk-good"}};
      httplib::Result r = client->Post("/v1/completions", keyed,
                                       R"({"prompt":"hello","max_tokens":2})", "application/json");
      ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      if (!r || r->status != 200) {
        ADD_FAILURE() << "request " << i << " failed under the flood";
        break;
      }
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() * 99 / 100];
  };
  const double idle = p99(200);
  std::vector<std::unique_ptr<RawClient>> attackers;
  for (int i = 0; i < 300; ++i) {
    // From another loopback address, as an attacker elsewhere would be.
    attackers.push_back(std::make_unique<RawClient>(router_->http_port(), "127.0.0.2"));
    attackers.back()->Send("POST /v1/completions HTTP/1.1\r\nHost: router\r\n");
  }
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    for (int round = 0; !stop.load(); ++round) {
      for (auto& a : attackers) a->Send(absl::StrCat("X-Drip-", round, ": y\r\n"));
      for (int i = 0; i < 20 && !stop.load(); ++i) absl::SleepFor(absl::Milliseconds(100));
    }
  });
  const double attacked = p99(200);
  stop.store(true);
  drip.join();
  std::printf(
      "completion p99 %.2f ms idle, %.2f ms under 300 slow-header connections "
      "(%d open)\n",
      idle, attacked, router_->http_connections());
}

// Finding 9: a non-streaming request kept running on the worker after its client left.
TEST_F(HttpAttacksTest, NonStreamingRequestEndsWhenItsClientLeaves) {
  StartWorkers(1);
  workers_[0]->SetTokenDelay(absl::Milliseconds(5));
  StartRouter();
  {
    RawClient c(router_->http_port());
    const std::string body = json{{"prompt", "long one"}, {"max_tokens", 4000}}.dump();
    ASSERT_TRUE(c.Send(absl::StrCat(
        "POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
        "Content-Length: ",
        body.size(), "\r\n\r\n", body)));
    ASSERT_TRUE(workers_[0]->WaitFor([](const FakeWorker& w) { return w.active() == 1; },
                                     absl::Seconds(10)));
  }  // the client closes its socket mid-generation
  EXPECT_TRUE(workers_[0]->WaitFor(
      [](const FakeWorker& w) { return w.cancelled() == 1 && w.active() == 0; },
      absl::Seconds(10)));
}

// Finding 10: /metrics (worker addresses, load) was open to anyone on the public port.
TEST_F(HttpAttacksTest, MetricsNeedAKeyOnThePublicPortAndNoneOnTheAdminPort) {
  StartKeyed([](RouterServerOptions& o) { o.admin_port = 0; });
  EXPECT_EQ(Http()->Get("/metrics")->status, 401);
  httplib::Headers keyed = {{"Authorization", "Bearer sk-good"}};
  EXPECT_EQ(Http()->Get("/metrics", keyed)->status, 200);
  for (const char* probe : {"/healthz", "/health", "/readyz"}) {
    EXPECT_EQ(Http()->Get(probe)->status, 200) << probe;
  }
  ASSERT_GT(router_->admin_port(), 0);
  httplib::Client admin("127.0.0.1", router_->admin_port());
  httplib::Result metrics = admin.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("expertmesh_router_requests_total"), std::string::npos);
  EXPECT_EQ(admin.Get("/readyz")->status, 200);
  // The admin port serves monitoring only.
  EXPECT_EQ(admin.Post("/v1/completions", "{}", "application/json")->status, 404);
}

TEST_F(HttpAttacksTest, OversizedHeadsAndUnknownRoutesGetOpenAiErrors) {
  StartKeyed();
  RawClient big(router_->http_port());
  big.Send(Head(absl::StrCat("X-Big: ", std::string(64 * 1024, 'b'), "\r\n")));
  const std::string r = big.ReadResponse(absl::Seconds(10));
  EXPECT_EQ(StatusOf(r), 431) << r.substr(0, 200);
  EXPECT_NE(r.find("\"error\""), std::string::npos);
  httplib::Result unknown = Http()->Get("/v2/nothing");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(json::parse(unknown->body)["error"]["code"], "not_found");
  // A body that is not JSON by its Content-Type.
  httplib::Headers keyed = {{"Authorization", "Bearer sk-good"}};
  httplib::Result plain =
      Http()->Post("/v1/completions", keyed, R"({"prompt":"hi"})", "text/plain");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 415);
  EXPECT_EQ(Complete(), 200);
}

}  // namespace
}  // namespace expertmesh::router::testing
