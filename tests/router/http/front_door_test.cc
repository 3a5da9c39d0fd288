// The HTTP front door against clients that break the rules: every limit holds before the
// router buffers what the client sends, and a misbehaving client never stops the others.
#include "router/http/front_door.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/router/http/raw_client.h"

namespace expertmesh::router::http {
namespace {

using ::expertmesh::router::testing::PeakResidentBytes;
using ::expertmesh::router::testing::RawClient;
using ::expertmesh::router::testing::StatusOf;

constexpr size_t kBodyLimit = 1 << 20;

class FrontDoorTest : public ::testing::Test {
 protected:
  void Start(const std::function<void(FrontDoorOptions&)>& edit = {}) {
    FrontDoorOptions o;
    o.limits.max_body_bytes = kBodyLimit;
    o.limits.head_timeout = absl::Seconds(1);
    o.limits.idle_timeout = absl::Seconds(2);
    o.limits.write_timeout = absl::Seconds(1);
    o.handler_threads = 4;
    o.max_queued_handlers = 4;
    if (edit) edit(o);
    std::vector<Route> routes;
    routes.push_back(
        {"POST", "/echo", true, true, false, [this](const HttpRequest& req, ResponseWriter& res) {
           handled_.fetch_add(1);
           res.Respond(200, "text/plain", absl::StrCat(req.body.size()));
         }});
    routes.push_back(
        {"GET", "/ping", false, false, true,
         [](const HttpRequest&, ResponseWriter& res) { res.Respond(200, "text/plain", "pong"); }});
    routes.push_back(
        {"GET", "/wait", false, false, false, [this](const HttpRequest&, ResponseWriter& res) {
           absl::Notification gone;
           CancelRegistration on_gone(&res.client_gone(), [&gone] { gone.Notify(); });
           started_.Notify();
           if (gone.WaitForNotificationWithTimeout(absl::Seconds(10))) {
             saw_client_gone_.store(true);
           }
           res.Respond(200, "text/plain", "late");
         }});
    routes.push_back(
        {"GET", "/stream", false, false, false, [this](const HttpRequest&, ResponseWriter& res) {
           res.BeginStream(200, "text/event-stream");
           const std::string chunk(1024, 'x');
           for (int i = 0; i < stream_chunks_; ++i) {
             if (!res.Write(chunk)) {
               stream_write_failed_.store(true);
               break;
             }
           }
           res.EndStream();
           stream_done_.Notify();
         }});
    FrontDoorHooks hooks;
    hooks.authorize = [](std::string_view authorization) {
      return authorization == "Bearer k" ? absl::OkStatus()
                                         : absl::UnauthenticatedError("missing or wrong key");
    };
    hooks.render_error = [](int status, std::string_view code, std::string_view message) {
      return absl::StrCat(R"({"error":{"code":")", std::string(code), R"(","message":")",
                          std::string(message), R"("}})");
    };
    door_ = std::make_unique<FrontDoor>(o, std::move(routes), hooks);
    absl::StatusOr<int> port = door_->Start();
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }
  void TearDown() override {
    if (door_) door_->Stop();
  }

  std::string Ping(const std::string& source = "127.0.0.1") {
    RawClient c(port_, source);
    c.Send("GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    return c.ReadResponse(absl::Seconds(5));
  }

  std::unique_ptr<FrontDoor> door_;
  int port_ = 0;
  std::atomic<int> handled_{0};
  absl::Notification started_;
  std::atomic<bool> saw_client_gone_{false};
  int stream_chunks_ = 64;
  std::atomic<bool> stream_write_failed_{false};
  absl::Notification stream_done_;
};

TEST_F(FrontDoorTest, ServesKeepAliveAndPipelinedRequests) {
  Start();
  RawClient c(port_);
  const std::string post =
      "POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
  ASSERT_TRUE(c.Send(post + post));  // two requests in one write
  std::string both = c.ReadAll(absl::Milliseconds(500));
  EXPECT_EQ(StatusOf(both), 200) << both;
  EXPECT_EQ(handled_.load(), 2) << both;
  ASSERT_TRUE(c.Send(post));
  EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(5))), 200);
}

TEST_F(FrontDoorTest, AuthorizationIsDecidedBeforeTheBodyIsRead) {
  Start();
  RawClient c(port_);
  // Announces a body far over the limit, sends none of it: the 401 comes from the head alone.
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: 1000\r\n\r\n"));
  const std::string r = c.ReadResponse(absl::Seconds(5));
  EXPECT_EQ(StatusOf(r), 401) << r;
  EXPECT_NE(r.find("invalid_api_key"), std::string::npos) << r;
  EXPECT_TRUE(c.PeerClosed(absl::Seconds(5)));
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(FrontDoorTest, CompressedBodiesAreRefusedUnread) {
  Start();
  RawClient c(port_);
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
             "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
             "Content-Length: 900000\r\n\r\n"));
  const std::string r = c.ReadResponse(absl::Seconds(5));
  EXPECT_EQ(StatusOf(r), 415) << r;
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(FrontDoorTest, NonJsonContentTypeIs415) {
  Start();
  for (const char* type : {"text/plain", ""}) {
    RawClient c(port_);
    std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n";
    if (*type) head += absl::StrCat("Content-Type: ", type, "\r\n");
    ASSERT_TRUE(c.Send(head + "Content-Length: 2\r\n\r\n{}"));
    EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(5))), 415) << type;
  }
  RawClient ok(port_);
  ASSERT_TRUE(
      ok.Send("POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
              "Content-Type: Application/JSON; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"));
  EXPECT_EQ(StatusOf(ok.ReadResponse(absl::Seconds(5))), 200);
}

TEST_F(FrontDoorTest, ContentLengthOverTheLimitIs413FromTheHead) {
  Start();
  RawClient c(port_);
  ASSERT_TRUE(
      c.Send(absl::StrCat("POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                          "Content-Type: application/json\r\nContent-Length: ",
                          kBodyLimit + 1, "\r\n\r\n")));
  EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(5))), 413);
}

// The finding: a chunked body skipped the size limit and was buffered whole. Now the count
// runs as chunks arrive: 413 once past the limit, the rest never read, memory flat.
TEST_F(FrontDoorTest, ChunkedBodyIsCountedAsItStreams) {
  Start();
  const size_t peak_before = PeakResidentBytes();
  RawClient c(port_);
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
             "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk = absl::StrCat("10000\r\n", std::string(0x10000, ' '), "\r\n");
  size_t sent = 0;
  while (sent < (64u << 20) && c.Send(chunk)) sent += 0x10000;  // up to 64 MiB
  const std::string r = c.ReadResponse(absl::Seconds(5));
  EXPECT_EQ(StatusOf(r), 413) << r;
  EXPECT_LT(sent, 16u << 20) << "the server kept reading after the limit";
  const size_t growth = PeakResidentBytes() - peak_before;
  std::printf("chunked 64 MiB attack: %zu bytes accepted by the socket, peak RSS +%zu KiB\n", sent,
              growth / 1024);
  EXPECT_LT(growth, 32u << 20);
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(FrontDoorTest, HeaderLimitsAre431) {
  Start();
  {
    RawClient c(port_);
    c.Send(absl::StrCat("GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ", std::string(100000, 'a'),
                        "\r\n\r\n"));
    EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(5))), 431);
  }
  {
    RawClient c(port_);
    std::string head = "GET /ping HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 150; ++i) absl::StrAppend(&head, "X-", i, ": y\r\n");
    c.Send(head + "\r\n");
    EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(5))), 431);
  }
}

TEST_F(FrontDoorTest, SlowHeadIsCutAtTheHeadDeadline) {
  Start();
  RawClient c(port_);
  const absl::Time start = absl::Now();
  c.Send("GET /ping HTTP/1.1\r\n");
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {  // one header line every 100 ms, for up to 4 s
    closed =
        !c.Send(absl::StrCat("X-Slow-", i, ": y\r\n")) || c.PeerClosed(absl::Milliseconds(100));
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(FrontDoorTest, UnknownPathAndMethod) {
  Start();
  RawClient a(port_);
  a.Send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(a.ReadResponse(absl::Seconds(5))), 404);
  RawClient b(port_);
  b.Send("DELETE /ping HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(b.ReadResponse(absl::Seconds(5))), 405);
  RawClient c(port_);
  c.Send("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(5))), 400);
}

TEST_F(FrontDoorTest, ConnectionsPerClientAreCapped) {
  Start([](FrontDoorOptions& o) { o.limits.max_connections_per_client = 8; });
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 8; ++i) held.push_back(std::make_unique<RawClient>(port_, "127.0.0.2"));
  // Let the server accept all eight before the ninth.
  for (int i = 0; i < 100 && door_->open_connections() < 8; ++i)
    absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(door_->open_connections(), 8);
  RawClient ninth(port_, "127.0.0.2");
  EXPECT_EQ(StatusOf(ninth.ReadResponse(absl::Seconds(5))), 503);
  EXPECT_EQ(StatusOf(Ping("127.0.0.1")), 200);  // another address is unaffected
}

TEST_F(FrontDoorTest, ExpectContinueIsHonoured) {
  Start();
  RawClient c(port_);
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      "Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  const std::string go = c.ReadAll(absl::Milliseconds(300));
  EXPECT_EQ(StatusOf(go), 100) << go;
  c.Send("{}");
  EXPECT_EQ(StatusOf(c.ReadResponse(absl::Seconds(5))), 200);
}

// The finding: a non-streaming request outlived its client. The front door watches the
// socket while the handler runs and fires client_gone on a disconnect.
TEST_F(FrontDoorTest, DisconnectDuringAHandlerFiresClientGone) {
  Start();
  {
    RawClient c(port_);
    c.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(started_.WaitForNotificationWithTimeout(absl::Seconds(5)));
  }  // closes
  for (int i = 0; i < 500 && !saw_client_gone_.load(); ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE(saw_client_gone_.load());
}

// Stopping with a response in flight leaves its connection's coroutine suspended for good (the
// I/O threads are gone), so it never takes its response channel out of the open-response table.
// That table outlived the io_context: destroying the front door destroyed the channel's wake-up
// (a timer and a strand executor of the dead io_context), which used Asio's freed services and
// locked their pthread mutexes (glibc's tpp.c assertion in router_e2e_test under load). Under
// ASan this test fails every time without the fix (heap-use-after-free in ~io_object_impl);
// without ASan the use after free may pass unnoticed.
TEST_F(FrontDoorTest, DestroyedAfterStopWithAHandlerInFlight) {
  Start();
  RawClient c(port_);
  c.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(started_.WaitForNotificationWithTimeout(absl::Seconds(5)));
  door_->Stop();  // the handler sees client_gone, answers into the stopped io_context, returns
  EXPECT_TRUE(saw_client_gone_.load());
  EXPECT_EQ(door_->open_connections(), 0);
  door_.reset();
}

TEST_F(FrontDoorTest, StreamsArriveWholeAndInOrder) {
  Start();
  RawClient c(port_);
  c.Send("GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string r = c.ReadAll(absl::Seconds(5));
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_NE(r.find("Transfer-Encoding: chunked"), std::string::npos) << r.substr(0, 300);
  const std::string body = r.substr(std::min(r.size(), r.find("\r\n\r\n")));
  EXPECT_EQ(static_cast<int>(std::count(body.begin(), body.end(), 'x')), 64 * 1024);
  EXPECT_TRUE(r.ends_with("0\r\n\r\n"));
}

TEST_F(FrontDoorTest, AReaderThatStopsReadingEndsItsStreamNotTheServer) {
  stream_chunks_ = 64 * 1024;  // 64 MiB: far more than socket buffers and the pending cap
  Start([](FrontDoorOptions& o) { o.limits.max_pending_response_bytes = 64 * 1024; });
  RawClient c(port_);
  c.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");  // and never reads
  ASSERT_TRUE(stream_done_.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(stream_write_failed_.load());
  EXPECT_EQ(StatusOf(Ping()), 200);
}

TEST_F(FrontDoorTest, FullHandlerPoolAnswers503) {
  Start([](FrontDoorOptions& o) {
    o.handler_threads = 1;
    o.max_queued_handlers = 0;
  });
  RawClient busy(port_);
  busy.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(started_.WaitForNotificationWithTimeout(absl::Seconds(5)));
  RawClient refused(port_);
  refused.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string r = refused.ReadResponse(absl::Seconds(5));
  EXPECT_EQ(StatusOf(r), 503) << r;
  EXPECT_NE(r.find("Retry-After: 1"), std::string::npos) << r;
  EXPECT_EQ(StatusOf(Ping()), 200);  // inline routes still answer
}

// The finding: 300 connections sending one header line every 2 s stopped all HTTP traffic.
// Now they cost a socket each: normal requests keep their latency.
TEST_F(FrontDoorTest, SlowHeaderFloodLeavesOthersServed) {
  Start([](FrontDoorOptions& o) { o.limits.head_timeout = absl::Seconds(10); });
  auto latencies = [this](int n) {  // one request every 10 ms
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      const absl::Time t = absl::Now();
      const int status = StatusOf(Ping());
      ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t));
      EXPECT_EQ(status, 200);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() * 99 / 100];
  };
  const double idle_p99 = latencies(300);
  std::vector<std::unique_ptr<RawClient>> attackers;
  for (int i = 0; i < 300; ++i) {
    attackers.push_back(std::make_unique<RawClient>(port_, "127.0.0.3"));
    attackers.back()->Send("POST /echo HTTP/1.1\r\nHost: x\r\n");
  }
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    for (int round = 0; !stop.load(); ++round) {
      for (auto& a : attackers) a->Send(absl::StrCat("X-Drip-", round, ": y\r\n"));
      for (int i = 0; i < 20 && !stop.load(); ++i) absl::SleepFor(absl::Milliseconds(100));
    }
  });
  const double attacked_p99 = latencies(300);
  stop.store(true);
  drip.join();
  std::printf("slow-header flood (300 connections): p99 %.2f ms idle, %.2f ms under attack\n",
              idle_p99, attacked_p99);
}

// HTTPS: TLS 1.2+ with the configured certificate; a plaintext client gets no HTTP answer.
TEST_F(FrontDoorTest, ServesTlsWhenGivenACertificate) {
  const std::string dir =
      absl::StrCat(EXPERTMESH_BINARY_DIR, "/test-scratch/front_door_tls/", getpid());
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  const std::string make = absl::StrCat(
      "mkdir -p ", dir, " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost",
      " -keyout ", key, " -out ", cert, " >/dev/null 2>&1");
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  Start([&](FrontDoorOptions& o) {
    o.tls_cert_file = cert;
    o.tls_key_file = key;
  });
  httplib::SSLClient tls("127.0.0.1", port_);
  tls.enable_server_certificate_verification(false);
  httplib::Result r = tls.Get("/ping");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "pong");
  RawClient plain(port_);
  plain.Send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(plain.ReadResponse(absl::Seconds(5))), 0);

  FrontDoorOptions bad;
  bad.tls_cert_file = cert;
  bad.tls_key_file = dir + "/missing.pem";
  FrontDoor broken(bad, {}, {});
  EXPECT_EQ(broken.Start().status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace expertmesh::router::http
