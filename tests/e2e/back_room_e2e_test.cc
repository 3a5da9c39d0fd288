// Issue 15, finding 5, with real processes: `expertmesh serve --tp 2` starts a router and a
// worker group of two ranks on loopback with a fresh internal token. The router serves
// completions through the group (it holds the token); a caller without the token gets
// UNAUTHENTICATED from the worker; the worker and its rendezvous listen on 127.0.0.1 only,
// and the rendezvous port is closed once the group has formed.
#include <signal.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/e2e/e2e_util.h"
#include "tests/util/listening_sockets.h"
#include "tools/cli/child_process.h"

namespace expertmesh {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
namespace api = ::expertmesh::internal::v1;

// `expertmesh serve`'s output, kept so the test can wait for a line.
class Serve {
 public:
  void Line(const std::string& line) {
    absl::MutexLock lock(&mu_);
    lines_.push_back(line);
  }
  // The text after `marker` on the first line that has it, waiting up to `timeout`.
  std::string WaitFor(const std::string& marker, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    std::string found;
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const std::string& l : lines_) {
        if (size_t at = l.find(marker); at != std::string::npos) {
          found = l.substr(at + marker.size());
          return true;
        }
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&has), timeout);
    return found;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

TEST(BackRoomE2eTest, ServeGuardsTheWorkerAndClosesTheRendezvous) {
  if (const std::string missing =
          e2e::MissingBinary({"expertmesh", "expertmesh-worker", "expertmesh-router"});
      !missing.empty()) {
    GTEST_SKIP() << missing << " is not built";
  }
  absl::StatusOr<std::string> model = e2e::TinyQwen3Model();
  ASSERT_TRUE(model.ok()) << model.status();
  // No token of ours in serve's environment: it must make one.
  unsetenv("EXPERTMESH_INTERNAL_TOKEN");

  Serve serve;
  absl::StatusOr<std::unique_ptr<cli::ChildProcess>> child = cli::ChildProcess::Spawn(
      {e2e::BinDir() + "/expertmesh", "serve", *model, "--tp", "2", "--http-port", "0",
       "--grpc-port", "-1", "--kv-budget", "32MiB", "--threads", "1", "--compute-dtype", "f32",
       "--grace-s", "2", "--device", "cpu"},
      [&](const std::string& line, bool is_stderr) {
        if (is_stderr) std::fprintf(stderr, "%s\n", line.c_str());
        serve.Line(line);
      });
  ASSERT_TRUE(child.ok()) << child.status();
  const std::string workers = serve.WaitFor("ready: 1 worker group(s) [", absl::Seconds(120));
  ASSERT_FALSE(workers.empty()) << "serve did not become ready";
  int rendezvous_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(serve.WaitFor("rendezvous listening on port ", absl::Seconds(1)),
                               &rendezvous_port));
  const std::string worker = workers.substr(0, workers.find(']'));
  const std::vector<std::string> host_port = absl::StrSplit(worker, ':');
  ASSERT_EQ(host_port.size(), 2u) << worker;
  const int worker_port = std::stoi(host_port[1]);
  std::string url = serve.WaitFor("OpenAI-compatible HTTP API at http://", absl::Seconds(1));
  url = url.substr(0, url.find("/v1"));
  const std::vector<std::string> http = absl::StrSplit(url, ':');
  ASSERT_EQ(http.size(), 2u) << url;

  // The router, holding serve's token, serves a completion through the group.
  httplib::Client client(http[0], std::stoi(http[1]));
  client.set_read_timeout(60, 0);
  auto res = client.Post("/v1/completions",
                         R"({"model": "tiny-qwen3", "prompt": "hello", "max_tokens": 3})",
                         "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200) << res->body;

  // Anyone else reaching the worker is refused.
  auto stub = api::Worker::NewStub(grpc::CreateChannel(worker, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  api::LoadReport report;
  grpc::Status load = stub->GetLoad(&context, api::GetLoadRequest(), &report);
  EXPECT_EQ(load.error_code(), grpc::StatusCode::UNAUTHENTICATED) << load.error_message();

  // Loopback only; the rendezvous gone once the group formed.
  EXPECT_THAT(testing::ListeningAddresses(worker_port), ElementsAre("127.0.0.1"));
  EXPECT_THAT(testing::ListeningAddresses(rendezvous_port), IsEmpty());

  (*child)->Signal(SIGTERM);
  EXPECT_TRUE((*child)->WaitFor(absl::Seconds(30)).has_value());
}

}  // namespace
}  // namespace expertmesh
