// Issue 14, item 3, with real processes: `expertmesh serve --groups 2 --tp 2` heals. While
// streams run on both groups, rank 1 of group B gets SIGKILL. Group A's streams complete with
// every token, the requests sent meanwhile are all served (by A while B is down), serve stops
// B's other rank and starts B again on the same port, the router logs B down and back up once
// each, and B serves routed requests again within kRecoveryBound; serve itself keeps running
// and stops cleanly on SIGTERM. Everything listens on 127.0.0.1.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_util.h"
#include "tools/cli/child_process.h"

namespace expertmesh {
namespace {

using Json = nlohmann::json;
namespace api = ::expertmesh::internal::v1;

// Generous for a loaded 2-core machine: B's restart is 1 s of backoff plus loading a tiny model
// on two ranks and forming their Gloo group; the router notices within a 500 ms poll.
constexpr absl::Duration kRecoveryBound = absl::Seconds(60);
constexpr absl::Duration kStartBound = absl::Seconds(120);
constexpr int kStreams = 4;          // round robin: two on each group
constexpr int kStreamTokens = 3000;  // still running well after B's rank is killed
constexpr int kProbeTokens = 200;    // streams that show B serving again

// serve's output (stdout and stderr), each line with when it came.
class Output {
 public:
  void Add(const std::string& line) {
    absl::MutexLock lock(&mu_);
    lines_.push_back({absl::Now(), line});
  }
  // The text after `marker` on the first line that has it, waiting up to `timeout`.
  std::string WaitFor(const std::string& marker, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    std::string found;
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& [at, l] : lines_) {
        if (size_t pos = l.find(marker); pos != std::string::npos) {
          found = l.substr(pos + marker.size());
          return true;
        }
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&has), timeout);
    return found;
  }
  // Lines holding every one of `parts`, with their times.
  std::vector<std::pair<absl::Time, std::string>> Matching(const std::vector<std::string>& parts) {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<absl::Time, std::string>> out;
    for (const auto& entry : lines_) {
      bool all = true;
      for (const std::string& p : parts) all = all && entry.second.find(p) != std::string::npos;
      if (all) out.push_back(entry);
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<absl::Time, std::string>> lines_ ABSL_GUARDED_BY(mu_);
};

// Running plus queued requests on a group's leader, asked directly (with serve's token);
// -1 when it does not answer.
int Running(const std::string& address, const std::string& token) {
  auto stub =
      api::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  context.AddMetadata("authorization", "Bearer " + token);
  api::LoadReport report;
  if (!stub->GetLoad(&context, api::GetLoadRequest(), &report).ok()) return -1;
  return static_cast<int>(report.running_requests() + report.queued_requests());
}

// The value of `gauge` for `group` in the router's /metrics; -1 when absent.
double Gauge(int port, const std::string& gauge, const std::string& group) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(5, 0);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return -1;
  const std::string key = absl::StrCat(gauge, "{group=\"", group, "\"} ");
  const size_t at = res->body.find(key);
  if (at == std::string::npos) return -1;
  const size_t start = at + key.size();
  double value = -1;
  if (!absl::SimpleAtod(res->body.substr(start, res->body.find('\n', start) - start), &value)) {
    return -1;
  }
  return value;
}

// The child of `parent` whose command line has `flag` followed by `value`; 0 if none.
pid_t ChildWithArgument(pid_t parent, const std::string& flag, const std::string& value) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string stat_line;
    if (!std::getline(stat, stat_line)) continue;
    // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
    const size_t paren = stat_line.rfind(')');
    if (paren == std::string::npos) continue;
    const std::vector<std::string> fields =
        absl::StrSplit(stat_line.substr(paren + 2), ' ', absl::SkipEmpty());
    pid_t ppid = 0;
    if (fields.size() < 2 || !absl::SimpleAtoi(fields[1], &ppid) || ppid != parent) continue;
    std::ifstream cmdline(entry.path() / "cmdline");
    std::vector<std::string> args;
    for (std::string arg; std::getline(cmdline, arg, '\0');) args.push_back(arg);
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == flag && args[i + 1] == value) return pid;
    }
  }
  return 0;
}

std::string RandomToken() {
  std::random_device rd;
  std::string token;
  for (int i = 0; i < 4; ++i) token += absl::StrFormat("%08x", rd());
  return token;
}

TEST(ServeSupervisionE2eTest, AKilledRankIsRestartedWithItsGroupWhileTheOtherServes) {
  if (const std::string missing =
          e2e::MissingBinary({"expertmesh", "expertmesh-worker", "expertmesh-router"});
      !missing.empty()) {
    GTEST_SKIP() << missing << " is not built";
  }
  absl::StatusOr<std::string> model = e2e::TinyQwen3Model();
  ASSERT_TRUE(model.ok()) << model.status();
  // serve keeps a token it finds in its environment: the test can then ask the workers' load.
  const std::string token = RandomToken();
  setenv("EXPERTMESH_INTERNAL_TOKEN", token.c_str(), 1);

  Output output;
  absl::StatusOr<std::unique_ptr<cli::ChildProcess>> serve = cli::ChildProcess::Spawn(
      {e2e::BinDir() + "/expertmesh",
       "serve",
       *model,
       "--groups",
       "2",
       "--tp",
       "2",
       "--routing",
       "round-robin",
       "--http-port",
       "0",
       "--grpc-port",
       "-1",
       "--kv-budget",
       "32MiB",
       "--threads",
       "1",
       "--compute-dtype",
       "f32",
       "--grace-s",
       "2",
       "--device",
       "cpu"},
      [&](const std::string& line, bool is_stderr) {
        std::fprintf(stderr, "%s\n", line.c_str());  // one stream keeps the order
        output.Add(line);
      });
  ASSERT_TRUE(serve.ok()) << serve.status();
  const std::string groups = output.WaitFor("ready: 2 worker group(s) [", kStartBound);
  ASSERT_FALSE(groups.empty()) << "serve did not become ready";
  const std::vector<std::string> addresses =
      absl::StrSplit(groups.substr(0, groups.find(']')), ", ");
  ASSERT_EQ(addresses.size(), 2u) << groups;
  const std::string a = addresses[0];
  const std::string b = addresses[1];
  std::string url = output.WaitFor("OpenAI-compatible HTTP API at http://", absl::Seconds(1));
  url = url.substr(0, url.find("/v1"));
  const std::vector<std::string> host_port = absl::StrSplit(url, ':');
  ASSERT_EQ(host_port.size(), 2u) << url;
  const int port = std::stoi(host_port[1]);

  // Long streams, one at a time so each one's group is known (the leaders' own counts).
  std::vector<e2e::CompletionStream> outcomes(kStreams);
  std::vector<bool> on_b(kStreams, false);
  std::vector<std::thread> streams;
  int on_a_count = 0, on_b_count = 0;
  for (int i = 0; i < kStreams; ++i) {
    auto started = std::make_shared<absl::Notification>();
    streams.emplace_back([&, i, started] {
      outcomes[i] =
          e2e::StreamCompletion(port, e2e::CompletionBody({5, 6, 7, 8 + i}, kStreamTokens, true),
                                120, [started] { started->Notify(); });
      if (!started->HasBeenNotified()) started->Notify();
    });
    ASSERT_TRUE(started->WaitForNotificationWithTimeout(absl::Seconds(60))) << "stream " << i;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    int ra = Running(a, token), rb = Running(b, token);
    while (ra + rb != i + 1 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));  // the leaders publish their load after a step
      ra = Running(a, token);
      rb = Running(b, token);
    }
    ASSERT_EQ(ra + rb, i + 1) << "stream " << i << ": A runs " << ra << ", B runs " << rb;
    on_b[i] = rb > on_b_count;
    on_a_count = ra;
    on_b_count = rb;
  }
  ASSERT_GE(on_a_count, 1);
  ASSERT_GE(on_b_count, 1);

  // Kill rank 1 of group B (group 1 of tp 2: its ranks run on --cuda-device 2 and 3).
  const pid_t victim = ChildWithArgument((*serve)->pid(), "--cuda-device", "3");
  ASSERT_GT(victim, 0) << "rank 1 of group B not found";
  const absl::Time killed = absl::Now();
  ASSERT_EQ(kill(victim, SIGKILL), 0);

  // Requests keep coming while B is down and back.
  std::atomic<bool> stop_requests{false};
  std::atomic<int> served{0};
  absl::Mutex failures_mu;
  std::vector<std::string> failures;
  std::thread requests([&] {
    while (!stop_requests.load()) {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(60, 0);
      auto res = client.Post("/v1/completions", e2e::CompletionBody({1, 2, 3}, 4, false).dump(),
                             "application/json");
      if (res && res->status == 200) {
        served.fetch_add(1);
      } else {
        absl::MutexLock lock(&failures_mu);
        failures.push_back(res ? absl::StrCat(res->status, " ", res->body)
                               : httplib::to_string(res.error()));
      }
      absl::SleepFor(absl::Milliseconds(50));  // pacing, not synchronisation
    }
  });

  // The router takes B out, then in again.
  absl::Time seen_down = absl::InfiniteFuture(), seen_up = absl::InfiniteFuture();
  while (absl::Now() - killed < kRecoveryBound) {
    const double up = Gauge(port, "expertmesh_worker_group_up", b);
    if (up == 0 && seen_down == absl::InfiniteFuture()) seen_down = absl::Now();
    if (up == 1 && seen_down != absl::InfiniteFuture()) {
      seen_up = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_NE(seen_down, absl::InfiniteFuture()) << "the router never took B out";
  ASSERT_NE(seen_up, absl::InfiniteFuture()) << "B not back within " << kRecoveryBound;

  // B serves routed requests again: round robin sends it every other one.
  std::vector<e2e::CompletionStream> probes(2);
  std::vector<std::thread> probe_threads;
  for (int i = 0; i < 2; ++i) {
    probe_threads.emplace_back([&, i] {
      probes[i] = e2e::StreamCompletion(
          port, e2e::CompletionBody({9, 10, 11 + i}, kProbeTokens, true), 120, nullptr);
    });
  }
  absl::Time b_serving = absl::InfiniteFuture();
  while (absl::Now() - killed < kRecoveryBound) {
    if (Running(b, token) > 0) {
      b_serving = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  for (std::thread& t : probe_threads) t.join();
  for (std::thread& t : streams) t.join();
  stop_requests.store(true);
  requests.join();

  const absl::Duration recovery = b_serving - killed;
  std::printf(
      "rank 1 of B killed at +0; router took B out at +%s, back in at +%s; B ran a routed "
      "request at +%s (bound %s); %d requests served meanwhile\n",
      absl::FormatDuration(seen_down - killed).c_str(),
      absl::FormatDuration(seen_up - killed).c_str(), absl::FormatDuration(recovery).c_str(),
      absl::FormatDuration(kRecoveryBound).c_str(), served.load());
  EXPECT_LT(recovery, kRecoveryBound) << "B never ran a routed request after its restart";

  // A's streams complete with every token, having run through the kill; B's broke.
  for (int i = 0; i < kStreams; ++i) {
    std::printf("stream %d on %s ended at +%s: %s\n", i, on_b[i] ? "B" : "A",
                absl::FormatDuration(outcomes[i].ended - killed).c_str(),
                outcomes[i].error.empty() ? "complete" : outcomes[i].error.c_str());
    const e2e::CompletionStream& o = outcomes[i];
    EXPECT_EQ(o.status, 200) << i;
    if (on_b[i]) {
      EXPECT_FALSE(o.error.empty()) << "stream " << i << " on B ended without an error";
      continue;
    }
    EXPECT_TRUE(o.error.empty()) << "stream " << i << " on A: " << o.error;
    EXPECT_TRUE(o.done) << i;
    EXPECT_EQ(o.completion_tokens, kStreamTokens) << i;
    EXPECT_GT(o.ended, killed) << "stream " << i << " on A ended before the kill: make it longer";
  }
  for (const e2e::CompletionStream& o : probes) {
    EXPECT_TRUE(o.error.empty()) << o.error;
    EXPECT_EQ(o.completion_tokens, kProbeTokens);
  }
  {
    absl::MutexLock lock(&failures_mu);
    EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures[0];
  }
  EXPECT_GT(served.load(), 0);

  // Once each: serve's restart of B (reason, backoff) and the router's transitions.
  EXPECT_EQ(output.Matching({"group 1: rank 1 (g1r1) killed by signal 9"}).size(), 1u);
  EXPECT_EQ(output.Matching({"group 1: restarting the group in 1s (restart 1;"}).size(), 1u);
  EXPECT_EQ(output.Matching({"group 1: serving again at " + b}).size(), 1u);
  EXPECT_EQ(output.Matching({"[router]", "worker group " + b + " is down: "}).size(), 1u);
  EXPECT_EQ(output.Matching({"[router]", "worker group " + b + " is up again"}).size(), 1u);
  EXPECT_TRUE(output.Matching({"group 0: "}).empty()) << "group A was touched";
  EXPECT_TRUE(output.Matching({"worker group " + a + " is down"}).empty());

  // serve never stopped, and stops cleanly when asked.
  EXPECT_FALSE((*serve)->ExitStatus().has_value()) << "serve exited";
  (*serve)->Signal(SIGTERM);
  const std::optional<int> status = (*serve)->WaitFor(absl::Seconds(60));
  ASSERT_TRUE(status.has_value()) << "serve did not stop";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << cli::DescribeWaitStatus(*status);
}

}  // namespace
}  // namespace expertmesh
