// `expertmesh bench` against a real router (HTTP on loopback) in front of the fake worker of
// tests/router: through RunBench, and as the built `expertmesh` program. Also the failures a
// benchmark must count and survive: a URL nobody listens on, HTTP errors, streams that end with
// an error.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router/router_server.h"
#include "tests/router/fake_worker.h"
#include "tests/util/shared_model.h"
#include "tools/cli/bench_run.h"
#include "tools/cli/child_process.h"
#include "tools/make_model/make_model.h"

namespace expertmesh::cli::bench {
namespace {

using Json = nlohmann::json;
using router::RouterServer;
using router::RouterServerOptions;
using router::testing::FakeWorker;

std::string ScratchDir() {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/bench_loopback";
  std::filesystem::create_directories(dir);
  return dir;
}

std::string ScratchFile(const std::string& name) {
  return absl::StrCat(ScratchDir(), "/", name, ".", ::getpid());
}

const std::string& ModelDir() {
  static const std::string dir = [] {
    make_model::MakeModelOptions options;
    options.arch = model::Architecture::kQwen3Moe;
    options.size = "tiny";
    options.out_dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch/bench_loopback/model";
    absl::StatusOr<std::string> made = expertmesh::testing::MakeSharedModel(options);
    if (!made.ok()) ADD_FAILURE() << made.status();
    return options.out_dir;
  }();
  return dir;
}

// A loopback port that nothing listens on: bound once, then closed.
int DeadPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

void ExpectOrdered(const Json& d, const std::string& what) {
  EXPECT_LE(d["p50"].get<double>(), d["p99"].get<double>()) << what;
  EXPECT_LE(d["p99"].get<double>(), d["max"].get<double>()) << what;
  EXPECT_LE(d["mean"].get<double>(), d["max"].get<double>()) << what;
  EXPECT_GE(d["p50"].get<double>(), 0) << what;
}

class BenchLoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override { std::signal(SIGPIPE, SIG_IGN); }

  void StartServer(const std::function<void(RouterServerOptions&)>& edit = {}) {
    absl::StatusOr<std::unique_ptr<FakeWorker>> w = FakeWorker::Start("127.0.0.1:0");
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = *std::move(w);
    // Tokens a few milliseconds apart, so TPOT and TTFT are real time and not noise.
    worker_->SetTokenDelay(absl::Milliseconds(2));
    RouterServerOptions o;
    o.model_dir = ModelDir();
    o.model_name = "tiny";
    o.grpc_port = -1;
    o.pool.targets.push_back(worker_->address());
    o.pool.poll_interval = absl::Hours(1);
    if (edit) edit(o);
    absl::StatusOr<std::unique_ptr<RouterServer>> r = RouterServer::Start(std::move(o));
    ASSERT_TRUE(r.ok()) << r.status();
    router_ = *std::move(r);
  }

  void TearDown() override {
    if (router_) router_->Shutdown(absl::ZeroDuration());
    router_.reset();
    worker_.reset();
  }

  std::string Url() const { return absl::StrCat("http://127.0.0.1:", router_->http_port()); }

  BenchOptions Small() const {
    BenchOptions o;
    o.url = router_ ? Url() : "";
    o.rates = {"40", "inf"};
    o.num_requests = 6;
    o.prompt_tokens = 16;
    o.output_tokens = 8;
    o.model_dir = ModelDir();
    o.client.max_concurrency = 4;
    o.client.request_timeout_s = 30;
    return o;
  }

  std::unique_ptr<FakeWorker> worker_;
  std::unique_ptr<RouterServer> router_;
};

TEST_F(BenchLoopbackTest, TwoRatesCompleteEveryRequestWithExactTokens) {
  StartServer();
  BenchOptions o = Small();
  o.client.model = "tiny";
  o.json_out = ScratchFile("two_rates.json");
  std::FILE* devnull = std::fopen("/dev/null", "w");
  absl::StatusOr<BenchOutcome> outcome = RunBench(o, devnull);
  std::fclose(devnull);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->completed, 12);
  EXPECT_EQ(outcome->failed, 0);
  EXPECT_EQ(worker_->submitted(), 12);
  const router::testing::iv1::SubmitRequest last = worker_->last_request();
  EXPECT_TRUE(last.ignore_eos());
  EXPECT_EQ(last.max_tokens(), 8u);

  // The file is what a script reads.
  absl::StatusOr<Json> j = ReadJsonFile(o.json_out);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["prompt_kind"], "tokens");
  EXPECT_EQ((*j)["model"], "tiny");
  ASSERT_EQ((*j)["results"].size(), 2u);
  EXPECT_EQ((*j)["results"][0]["rate"], 40.0);
  EXPECT_EQ((*j)["results"][1]["rate"], "inf");
  for (const Json& r : (*j)["results"]) {
    const std::string name = r["schedule"];
    EXPECT_EQ(r["requests"], 6) << name;
    EXPECT_EQ(r["completed"], 6) << name;
    EXPECT_EQ(r["failed"], 0) << name;
    EXPECT_TRUE(r["errors"].empty()) << r["errors"].dump();
    // ignore_eos: every request gives its 8 tokens, counted from the usage.
    EXPECT_EQ(r["output_tokens"], 6 * 8) << name;
    EXPECT_EQ(r["tokens_counted_from_chunks"], 0) << name;
    EXPECT_EQ(r["short_outputs"], 0) << name;
    EXPECT_EQ(r["prompt_tokens"], 6 * 16) << name;    // token-id prompts are exact
    EXPECT_EQ(r["cached_prompt_tokens"], 0) << name;  // no two prompts alike
    EXPECT_GT(r["output_throughput"].get<double>(), 0) << name;
    EXPECT_GT(r["request_throughput"].get<double>(), 0) << name;
    EXPECT_GT(r["duration_s"].get<double>(), 0) << name;
    for (const char* d : {"ttft_ms", "tpot_ms", "e2e_ms"}) {
      EXPECT_EQ(r[d]["count"], 6) << name << " " << d;
      ExpectOrdered(r[d], absl::StrCat(name, " ", d));
    }
    EXPECT_LE(r["ttft_ms"]["p50"].get<double>(), r["e2e_ms"]["p50"].get<double>()) << name;
    EXPECT_LE(r["ttft_ms"]["max"].get<double>(), r["e2e_ms"]["max"].get<double>()) << name;
    // Seven tokens after the first, each at least the worker's 2 ms apart.
    EXPECT_GE(r["tpot_ms"]["p50"].get<double>(), 1.5) << name;
  }
  for (const ScheduleReport& r : outcome->reports) {
    EXPECT_LE(r.ttft_ms.mean, r.e2e_ms.mean);
  }
  std::filesystem::remove(o.json_out);
}

TEST_F(BenchLoopbackTest, WordPromptsAndSavedSchedulesReplay) {
  StartServer();
  BenchOptions o = Small();
  o.model_dir.clear();  // no vocabulary: auto means words
  o.rates = {"inf"};
  o.num_requests = 3;
  o.save_schedule = ScratchFile("saved.json");
  std::FILE* devnull = std::fopen("/dev/null", "w");
  absl::StatusOr<BenchOutcome> first = RunBench(o, devnull);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->json["prompt_kind"], "words");
  EXPECT_EQ(first->completed, 3);
  EXPECT_GT(first->reports[0].prompt_tokens, 0);

  // Replayed from the file: the same prompts (the prefix cache of the worker now has them) and
  // the same lengths, whatever the prompt options say.
  BenchOptions replay = Small();
  replay.schedule_files = {o.save_schedule};
  replay.prompt_tokens = 1;
  absl::StatusOr<BenchOutcome> second = RunBench(replay, devnull);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->reports.size(), 1u);
  EXPECT_EQ(second->reports[0].name, first->reports[0].name);
  EXPECT_EQ(second->reports[0].completed, 3);
  EXPECT_EQ(second->reports[0].prompt_tokens, first->reports[0].prompt_tokens);
  EXPECT_EQ(second->reports[0].output_tokens, 3 * 8);

  // A schedule.py file: its arrivals, prompts from the options.
  const std::string text = ScratchFile("sched.txt");
  std::ofstream(text) << "# rate=50 count=2 seed=1\n0.000000\n0.020000\n";
  BenchOptions from_text = Small();
  from_text.schedule_files = {text};
  absl::StatusOr<BenchOutcome> third = RunBench(from_text, devnull);
  std::fclose(devnull);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->reports[0].name, "rate=50 count=2 seed=1");
  EXPECT_EQ(third->reports[0].completed, 2);
  EXPECT_EQ(third->reports[0].prompt_tokens, 2 * 16);
  std::filesystem::remove(o.save_schedule);
  std::filesystem::remove(text);
}

TEST_F(BenchLoopbackTest, ADeadUrlCountsFailuresAndSaysWhy) {
  const int port = DeadPort();
  ASSERT_GT(port, 0);
  BenchOptions o = Small();
  o.url = absl::StrCat("http://127.0.0.1:", port);
  o.json_out = ScratchFile("dead.json");
  std::FILE* devnull = std::fopen("/dev/null", "w");
  absl::StatusOr<BenchOutcome> outcome = RunBench(o, devnull);
  std::fclose(devnull);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->completed, 0);
  EXPECT_EQ(outcome->failed, 12);
  ASSERT_EQ(outcome->reports.size(), 2u);
  for (const ScheduleReport& r : outcome->reports) {
    EXPECT_EQ(r.failed, 6);
    ASSERT_EQ(r.errors.count("connection"), 1u) << ReportText(r);
    EXPECT_EQ(r.errors.at("connection"), 6);
    const std::string& message = r.first_errors.at("connection");
    EXPECT_NE(message.find(o.url), std::string::npos) << message;
    EXPECT_NE(message.find("onnection"), std::string::npos) << message;
    EXPECT_EQ(r.ttft_ms.count, 0);
    EXPECT_EQ(r.output_throughput, 0);
  }
  absl::StatusOr<Json> j = ReadJsonFile(o.json_out);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["failed"], 12);
  EXPECT_EQ((*j)["results"][0]["errors"]["connection"]["count"], 6);
  std::filesystem::remove(o.json_out);
}

TEST_F(BenchLoopbackTest, HttpErrorsAndBrokenStreamsAreCountedPerKind) {
  StartServer([](RouterServerOptions& o) { o.api_keys = router::ApiKeys({"sk-right"}); });
  BenchOptions o = Small();
  o.rates = {"inf"};
  o.num_requests = 3;
  std::FILE* devnull = std::fopen("/dev/null", "w");
  absl::StatusOr<BenchOutcome> no_key = RunBench(o, devnull);
  ASSERT_TRUE(no_key.ok()) << no_key.status();
  EXPECT_EQ(no_key->failed, 3);
  ASSERT_EQ(no_key->reports[0].errors.count("http 401"), 1u) << ReportText(no_key->reports[0]);
  EXPECT_NE(no_key->reports[0].first_errors.at("http 401").find("HTTP 401"), std::string::npos);

  // With the key, the worker dies after 3 tokens: the router ends each stream with an error.
  o.client.api_key = "sk-right";
  worker_->DieAfterTokens(3);
  absl::StatusOr<BenchOutcome> broken = RunBench(o, devnull);
  std::fclose(devnull);
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_EQ(broken->completed, 0);
  EXPECT_EQ(broken->failed, 3);
  EXPECT_EQ(broken->reports[0].errors.count("stream error"), 1u) << ReportText(broken->reports[0]);
}

TEST_F(BenchLoopbackTest, ASilentServerIsATimeout) {
  StartServer();
  worker_->SetTokenDelay(absl::Seconds(5));
  BenchOptions o = Small();
  o.rates = {"inf"};
  o.num_requests = 2;
  o.client.request_timeout_s = 0.3;
  std::FILE* devnull = std::fopen("/dev/null", "w");
  absl::StatusOr<BenchOutcome> outcome = RunBench(o, devnull);
  std::fclose(devnull);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->failed, 2);
  ASSERT_EQ(outcome->reports[0].errors.count("timeout"), 1u) << ReportText(outcome->reports[0]);
  EXPECT_EQ(outcome->reports[0].errors.at("timeout"), 2);
  EXPECT_LT(outcome->reports[0].duration_s, 3);  // the requests gave up, not the worker
}

// The built program: flags, exit status, the JSON file, and the message for a dead server.
class BenchProgramTest : public BenchLoopbackTest {
 protected:
  struct Run {
    int exit_code = -1;
    std::string out, err;
  };
  Run RunProgram(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {EXPERTMESH_CLI, "bench"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto run = std::make_shared<Run>();
    auto mu = std::make_shared<absl::Mutex>();  // guards *run (shared with the reader threads)
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Spawn(argv, [run, mu](const std::string& line, bool is_stderr) {
          absl::MutexLock lock(mu.get());
          (is_stderr ? run->err : run->out) += line + "\n";
        });
    if (!child.ok()) {
      ADD_FAILURE() << child.status();
      return {};
    }
    const std::optional<int> status = (*child)->WaitFor(absl::Seconds(60));
    if (!status.has_value()) {
      ADD_FAILURE() << "expertmesh bench did not finish in 60 s";
      return {};
    }
    child->reset();  // joins the readers: every line is in
    absl::MutexLock lock(mu.get());
    Run out = *run;
    out.exit_code = WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
    return out;
  }
};

TEST_F(BenchProgramTest, RunsAgainstTheServer) {
  StartServer();
  const std::string json = ScratchFile("program.json");
  const Run run = RunProgram({"--url", Url() + "/v1", "--rates", "30,inf", "--num-requests", "4",
                              "--prompt-tokens", "8", "--output-tokens", "4", "--model-dir",
                              ModelDir(), "--max-concurrency", "2", "--json", json});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("serving engine=expertmesh_http schedule=\"rate=30 count=4 seed=1\""),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("TTFT ms"), std::string::npos) << run.out;
  absl::StatusOr<Json> j = ReadJsonFile(json);
  ASSERT_TRUE(j.ok()) << j.status();
  ASSERT_EQ((*j)["results"].size(), 2u);
  for (const Json& r : (*j)["results"]) {
    EXPECT_EQ(r["completed"], 4);
    EXPECT_EQ(r["output_tokens"], 16);
  }
  EXPECT_EQ((*j)["max_concurrency"], 2);
  std::filesystem::remove(json);
}

TEST_F(BenchProgramTest, ADeadServerExitsOneWithTheReason) {
  const int port = DeadPort();
  ASSERT_GT(port, 0);
  const std::string json = ScratchFile("program_dead.json");
  const Run run = RunProgram({"--url", absl::StrCat("http://127.0.0.1:", port), "--rates", "inf",
                              "--num-requests", "3", "--prompt-kind", "words", "--json", json});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.err.find("no request completed (3 failed)"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find(absl::StrCat("127.0.0.1:", port)), std::string::npos) << run.err;
  EXPECT_NE(run.out.find("failed: 3 x connection"), std::string::npos) << run.out;
  absl::StatusOr<Json> j = ReadJsonFile(json);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["failed"], 3);
  std::filesystem::remove(json);
}

TEST_F(BenchProgramTest, BadOptionsAreRefusedBeforeAnyRequest) {
  Run run = RunProgram({"--url", "ftp://127.0.0.1:1", "--rates", "inf"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("only http:// and https://"), std::string::npos) << run.err;
  run = RunProgram({"--rates", "4,fast"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("'fast' is not a request rate"), std::string::npos) << run.err;
  run = RunProgram({"--prompt-kind", "tokens", "--rates", "inf"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--vocab-size"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace expertmesh::cli::bench
