// End to end with real processes on loopback: expertmesh-router in front of two worker groups
// of two expertmesh-worker ranks each (group 0 tensor-parallel, tp 2; group 1 expert-parallel,
// ep 2; Gloo over loopback between the ranks) serving a tiny make-model model. Checks greedy
// parity with the single-process engine over HTTP, 64 concurrent streams with correct usage,
// a group leader killed mid-stream, and a group's other rank killed mid-stream.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_util.h"
#include "tests/util/cpu_engine.h"
#include "tools/cli/child_process.h"
#include "tools/make_model/make_model.h"
#include "worker/engine/engine.h"

namespace expertmesh {
namespace {

using cli::ChildProcess;
using Json = nlohmann::json;
namespace api = ::expertmesh::internal::v1;

constexpr absl::Duration kReady = absl::Seconds(60);

// A child whose stdout lines are kept so a test can wait for one.
struct Proc {
  std::unique_ptr<ChildProcess> child;
  absl::Mutex mu;
  std::vector<std::string> lines ABSL_GUARDED_BY(mu);

  // The text after `marker` on the first stdout line that has it, waiting up to `timeout`.
  std::string WaitFor(const std::string& marker, absl::Duration timeout) {
    absl::MutexLock lock(&mu);
    std::string found;
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      for (const std::string& l : lines) {
        const size_t at = l.find(marker);
        if (at != std::string::npos) {
          found = l.substr(at + marker.size());
          return true;
        }
      }
      return false;
    };
    mu.AwaitWithTimeout(absl::Condition(&has), timeout);
    return found;
  }
};

std::unique_ptr<Proc> Launch(const std::string& name, const std::vector<std::string>& argv) {
  auto proc = std::make_unique<Proc>();
  Proc* p = proc.get();
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Spawn(argv, [p, name](const std::string& line, bool is_stderr) {
        if (is_stderr) {
          std::fprintf(stderr, "[%s] %s\n", name.c_str(), line.c_str());
          return;
        }
        absl::MutexLock lock(&p->mu);
        p->lines.push_back(line);
      });
  EXPECT_TRUE(child.ok()) << child.status();
  if (child.ok()) proc->child = *std::move(child);
  return proc;
}

class ServingE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> made = e2e::TinyQwen3Model();
    ASSERT_TRUE(made.ok()) << made.status();
    model_dir_ = new std::string(*made);
  }
  static void TearDownTestSuite() { delete model_dir_; }

  void SetUp() override { StartTwoGroups(); }

  // A worker on loopback over the test model, small and deterministic (f32, one thread).
  static std::vector<std::string> WorkerArgv() {
    return {e2e::BinDir() + "/expertmesh-worker",
            "--model",
            *model_dir_,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--kv-budget",
            "32MiB",
            "--threads",
            "1",
            "--compute-dtype",
            "f32",
            "--grace-s",
            "2"};
  }

  // Waits for the router's HTTP port and /readyz.
  void StartRouter(const std::vector<std::string>& addresses) {
    router_ = Launch("router",
                     {e2e::BinDir() + "/expertmesh-router", "--model-dir", *model_dir_, "--workers",
                      absl::StrJoin(addresses, ","), "--host", "127.0.0.1", "--http-port", "0",
                      "--grpc-port", "-1", "--poll-ms", "100", "--grace-s", "2"});
    const std::string url = router_->WaitFor("HTTP listening on http://", kReady);
    ASSERT_FALSE(url.empty()) << "router not ready";
    const std::vector<std::string> hp = absl::StrSplit(url, ':');
    ASSERT_EQ(hp.size(), 2u);
    http_port_ = std::stoi(hp[1]);
    const absl::Time deadline = absl::Now() + kReady;
    bool ready = false;
    while (!ready && absl::Now() < deadline) {
      httplib::Client client("127.0.0.1", http_port_);
      auto res = client.Get("/readyz");
      ready = res && res->status == 200;
      if (!ready) absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_TRUE(ready) << "router /readyz never 200";
  }

  void StartTwoGroups() {
    if (const std::string missing = e2e::MissingBinary({"expertmesh-worker", "expertmesh-router"});
        !missing.empty()) {
      GTEST_SKIP() << missing << " is not built";
    }
    for (int g = 0; g < 2; ++g) {
      // Group 0: --tp 2; group 1: --ep 2. Rank 0 picks a free rendezvous port and prints it.
      std::vector<std::string> argv = WorkerArgv();
      for (const char* a : {"--comm-timeout-s", "10", g == 0 ? "--tp" : "--ep", "2"}) {
        argv.push_back(a);
      }
      std::vector<std::string> leader = argv;
      for (const char* a : {"--rank", "0", "--leader", "127.0.0.1:0"}) leader.push_back(a);
      workers_.push_back(Launch(absl::StrCat("g", g, "r0"), leader));
      const std::string port = workers_.back()->WaitFor("rendezvous listening on port ", kReady);
      ASSERT_FALSE(port.empty()) << "group " << g << " leader did not listen";
      std::vector<std::string> follower = argv;
      for (const std::string& a : {std::string("--rank"), std::string("1"), std::string("--leader"),
                                   absl::StrCat("127.0.0.1:", port)}) {
        follower.push_back(a);
      }
      followers_.push_back(Launch(absl::StrCat("g", g, "r1"), follower));
    }
    std::vector<std::string> addresses;
    for (auto& w : workers_) {
      addresses.push_back(w->WaitFor("expertmesh-worker: listening on ", kReady));
      ASSERT_FALSE(addresses.back().empty()) << "worker not ready";
    }
    worker_addresses_ = addresses;
    StartRouter(addresses);
  }

  void TearDown() override {
    if (router_ && router_->child) router_->child->Signal(SIGTERM);
    for (auto& w : workers_) {
      if (w->child) w->child->Signal(SIGTERM);
    }
    if (router_ && router_->child) {
      EXPECT_TRUE(router_->child->WaitFor(absl::Seconds(20)).has_value());
    }
    for (auto& w : workers_) {
      if (w->child) w->child->WaitFor(absl::Seconds(20));
    }
    // The other ranks exit once their leader has drained and told them to stop (or died).
    for (auto& f : followers_) {
      if (f->child) {
        EXPECT_TRUE(f->child->WaitFor(absl::Seconds(20)).has_value());
      }
    }
  }

  // The single-process engine's greedy continuation of `prompt`.
  static std::vector<int32_t> ReferenceGreedy(const std::vector<int32_t>& prompt, int max_tokens) {
    engine::EngineOptions options;
    options.compute_dtype = DType::kF32;
    options.kv_cache_bytes = 32ull << 20;
    absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
        expertmesh::testing::LoadCpuEngine(*model_dir_, options, /*threads=*/1);
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return {};
    scheduler::GenerationRequest request;
    request.id = "ref";
    request.prompt = prompt;
    request.sampling.temperature = 0;
    request.max_tokens = max_tokens;
    request.ignore_eos = true;
    EXPECT_TRUE((*engine)->AddRequest(request).ok());
    std::vector<int32_t> out;
    while ((*engine)->HasWork()) {
      absl::StatusOr<std::vector<engine::RequestOutput>> step = (*engine)->Step();
      EXPECT_TRUE(step.ok()) << step.status();
      if (!step.ok()) break;
      for (const engine::RequestOutput& o : *step) out.push_back(o.token.token);
    }
    return out;
  }

  // Streams a completion; `on_first_chunk` runs once when the first text arrives.
  // A connection that fails before any byte of the response arrived is retried (twice), as
  // SDK clients do: cpp-httplib listens with a backlog of 5, so a burst of 64 connects can
  // overflow the router's accept queue (counted in connection_retries_).
  e2e::CompletionStream Stream(const Json& body, std::function<void()> on_first_chunk = nullptr) {
    e2e::CompletionStream out;
    for (int attempt = 0; attempt < 3; ++attempt) {
      out = e2e::StreamCompletion(http_port_, body, 60, on_first_chunk);
      if (out.status != -1 || out.received_bytes > 0) break;
      connection_retries_.fetch_add(1);
    }
    return out;
  }

  static std::optional<api::LoadReport> LoadOf(const std::string& address) {
    auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    auto stub = api::Worker::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    api::LoadReport report;
    if (!stub->GetLoad(&context, {}, &report).ok()) return std::nullopt;
    return report;
  }

  int RunningOn(const std::string& address) {
    std::optional<api::LoadReport> report = LoadOf(address);
    if (!report) return -1;
    return static_cast<int>(report->running_requests() + report->queued_requests());
  }

  // After group `broken` failed: new requests are served (by the other group) and none is left
  // running there.
  void ExpectTheOtherGroupServes(int broken) {
    for (int i = 0; i < 4; ++i) {
      httplib::Client client("127.0.0.1", http_port_);
      auto res = client.Post("/v1/completions", e2e::CompletionBody({1, 2, 3}, 8, false).dump(),
                             "application/json");
      ASSERT_TRUE(res);
      EXPECT_EQ(res->status, 200) << res->body;
    }
    // The worker republishes its load just after the step that ended the last stream.
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (RunningOn(worker_addresses_[1 - broken]) != 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(RunningOn(worker_addresses_[1 - broken]), 0);
  }

  static std::string* model_dir_;
  std::vector<std::unique_ptr<Proc>> workers_;    // each group's rank 0
  std::vector<std::unique_ptr<Proc>> followers_;  // each group's rank 1
  std::vector<std::string> worker_addresses_;
  std::unique_ptr<Proc> router_;
  int http_port_ = 0;
  std::atomic<int> connection_retries_{0};
};

std::string* ServingE2eTest::model_dir_ = nullptr;

std::vector<std::vector<int32_t>> Prompts() {
  return {
      {1, 2, 3, 4, 5}, {100, 200, 300}, {42}, {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}};
}

TEST_F(ServingE2eTest, GreedyOutputsEqualTheSingleProcessEngine) {
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::Tokenizer::LoadFromDirectory(*model_dir_);
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const std::vector<int32_t>& prompt : Prompts()) {
    const std::vector<int32_t> expected = ReferenceGreedy(prompt, 12);
    ASSERT_EQ(expected.size(), 12u);
    httplib::Client client("127.0.0.1", http_port_);
    auto res = client.Post("/v1/completions", e2e::CompletionBody(prompt, 12, false).dump(),
                           "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    Json j = Json::parse(res->body);
    EXPECT_EQ(j["choices"][0]["text"].get<std::string>(), (*tok)->Decode(expected, true))
        << res->body;
    EXPECT_EQ(j["usage"]["completion_tokens"].get<int64_t>(), 12);
    EXPECT_EQ(j["usage"]["prompt_tokens"].get<int64_t>(), static_cast<int64_t>(prompt.size()));
  }
}

TEST_F(ServingE2eTest, SixtyFourConcurrentStreamsCompleteWithCorrectUsage) {
  const std::vector<std::vector<int32_t>> prompts = Prompts();
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::Tokenizer::LoadFromDirectory(*model_dir_);
  ASSERT_TRUE(tok.ok());
  std::vector<std::string> expected_text;
  for (const auto& p : prompts)
    expected_text.push_back((*tok)->Decode(ReferenceGreedy(p, 16), true));
  constexpr int kStreams = 64;
  std::vector<e2e::CompletionStream> outcomes(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      outcomes[i] = Stream(e2e::CompletionBody(prompts[i % prompts.size()], 16, true));
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    const e2e::CompletionStream& o = outcomes[i];
    EXPECT_EQ(o.status, 200) << i;
    EXPECT_TRUE(o.done) << i << " " << o.error;
    EXPECT_TRUE(o.error.empty()) << i << " " << o.error;
    EXPECT_EQ(o.completion_tokens, 16) << i;
    EXPECT_EQ(o.prompt_tokens, static_cast<int64_t>(prompts[i % prompts.size()].size())) << i;
    EXPECT_EQ(o.text, expected_text[i % prompts.size()]) << i;
  }
  std::printf("connection retries (accept-queue overflow): %d\n", connection_retries_.load());
  // Nothing is left running on either group (once the load reports are republished).
  for (const std::string& address : worker_addresses_) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (RunningOn(address) != 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(RunningOn(address), 0);
  }
}

// Clients that hang up mid-stream abort their requests on the (real) workers, whose KV pools
// return to full.
TEST_F(ServingE2eTest, FiftyCancelledStreamsReturnTheKvPoolsToFull) {
  constexpr int kStreams = 50;
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      bool counted = false;
      const absl::Time give_up = absl::Now() + absl::Seconds(30);
      // Retried while nothing arrived: a burst of connects can overflow the accept queue.
      for (int attempt = 0; attempt < 3 && !counted; ++attempt) {
        httplib::Client client("127.0.0.1", http_port_);
        client.set_read_timeout(60, 0);
        httplib::Request req;
        req.method = "POST";
        req.path = "/v1/completions";
        req.body = e2e::CompletionBody({3, 4, static_cast<int32_t>(5 + i)}, 4000, true).dump();
        req.set_header("Content-Type", "application/json");
        req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
          if (!counted) {
            counted = true;
            started.fetch_add(1);
          }
          // Hang up once every stream is generating (or after a bound, so nothing hangs).
          return started.load() < kStreams && absl::Now() < give_up;
        };
        httplib::Response res;
        httplib::Error error;
        client.send(req, res, error);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(started.load(), kStreams);
  for (const std::string& address : worker_addresses_) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    std::optional<api::LoadReport> load;
    while (absl::Now() < deadline) {
      load = LoadOf(address);
      if (load && load->running_requests() == 0 && load->queued_requests() == 0 &&
          load->free_kv_blocks() == load->total_kv_blocks()) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_TRUE(load.has_value()) << address;
    EXPECT_EQ(load->running_requests() + load->queued_requests(), 0) << address;
    EXPECT_EQ(load->free_kv_blocks(), load->total_kv_blocks()) << load->DebugString();
    EXPECT_GT(load->total_kv_blocks(), 0);
  }
}

TEST_F(ServingE2eTest, WorkerKilledMidStreamEndsThatStreamAndOthersAreServed) {
  int killed = -1;
  e2e::CompletionStream victim = Stream(e2e::CompletionBody({5, 6, 7}, 4000, true), [&] {
    // The stream is live: find the group running it and kill that process.
    for (int g = 0; g < 2; ++g) {
      if (RunningOn(worker_addresses_[g]) > 0) {
        killed = g;
        workers_[g]->child->Signal(SIGKILL);
        return;
      }
    }
  });
  ASSERT_GE(killed, 0) << "no group reported the running request";
  EXPECT_FALSE(victim.error.empty())
      << "stream ended without an error; text size " << victim.text.size();
  EXPECT_NE(victim.error.find("failed after"), std::string::npos) << victim.error;
  std::printf("killed worker%d mid-stream; the stream ended with: %s\n", killed,
              victim.error.c_str());
  EXPECT_LT(victim.completion_tokens, 4000);
  ExpectTheOtherGroupServes(killed);
}

TEST_F(ServingE2eTest, OtherRankKilledMidStreamBreaksItsGroupOnly) {
  int killed = -1;
  e2e::CompletionStream victim = Stream(e2e::CompletionBody({9, 8, 7}, 4000, true), [&] {
    for (int g = 0; g < 2; ++g) {
      if (RunningOn(worker_addresses_[g]) > 0) {
        killed = g;
        followers_[g]->child->Signal(SIGKILL);
        return;
      }
    }
  });
  ASSERT_GE(killed, 0) << "no group reported the running request";
  EXPECT_FALSE(victim.error.empty())
      << "stream ended without an error; text size " << victim.text.size();
  std::printf("killed rank 1 of group %d mid-stream; the stream ended with: %s\n", killed,
              victim.error.c_str());
  EXPECT_LT(victim.completion_tokens, 4000);
  // The broken group's leader stops serving and exits instead of hanging.
  const std::optional<int> leader_exit = workers_[killed]->child->WaitFor(absl::Seconds(15));
  EXPECT_TRUE(leader_exit.has_value()) << "the leader of the broken group did not exit";
  ExpectTheOtherGroupServes(killed);
}

// One pod running a whole tp 2 group: `--ranks-per-pod 2` makes the worker a launcher of two
// local ranks (EXPERTMESH_LOCAL_RANK 0 and 1), as a GPU pod runs one rank per GPU.
class PodLauncherTest : public ServingE2eTest {
 protected:
  void SetUp() override {
    // A free port for the rendezvous (the local ranks must agree on it before they start).
    int port = 0;
    {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      ASSERT_GE(fd, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof(addr);
      ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
      port = ntohs(addr.sin_port);
      close(fd);
    }
    ASSERT_GT(port, 0);
    std::vector<std::string> argv = WorkerArgv();
    for (const std::string& a :
         {std::string("--tp"), std::string("2"), std::string("--ranks-per-pod"), std::string("2"),
          std::string("--leader"), absl::StrCat("127.0.0.1:", port)}) {
      argv.push_back(a);
    }
    workers_.push_back(Launch("pod", argv));
    const std::string address = workers_[0]->WaitFor("expertmesh-worker: listening on ", kReady);
    ASSERT_FALSE(address.empty()) << "the pod's rank 0 did not serve";
    EXPECT_EQ(workers_[0]->WaitFor("pod launcher started ", kReady), "2 local ranks");
    worker_addresses_ = {address};
    StartRouter(worker_addresses_);
  }
};

TEST_F(PodLauncherTest, OnePodRunsAWholeGroupAndStopsOnSigterm) {
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::Tokenizer::LoadFromDirectory(*model_dir_);
  ASSERT_TRUE(tok.ok()) << tok.status();
  httplib::Client client("127.0.0.1", http_port_);
  auto res = client.Post("/v1/completions", e2e::CompletionBody(prompt, 12, false).dump(),
                         "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(Json::parse(res->body)["choices"][0]["text"].get<std::string>(),
            (*tok)->Decode(ReferenceGreedy(prompt, 12), true));
  // SIGTERM to the pod's process reaches both ranks; the leader drains and stops its follower.
  workers_[0]->child->Signal(SIGTERM);
  const std::optional<int> status = workers_[0]->child->WaitFor(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "the pod did not stop";
  EXPECT_EQ(*status, 0);
}

}  // namespace
}  // namespace expertmesh
