// Router overhead on loopback, with the fake worker of tests/router (it streams the prompt's
// tokens back without model compute, so what is measured is the router's own cost):
//
// 1. Added latency per request. The same request (P prompt token ids, T output tokens, greedy)
//    sequentially, one at a time, over three paths, interleaved request by request so machine
//    noise hits all paths alike:
//      direct       gRPC client -> fake worker (internal Worker.Submit stream)
//      router gRPC  gRPC client -> expertmesh-router (public Inference.Generate) -> fake worker
//      router HTTP  HTTP client -> expertmesh-router (/v1/completions, SSE) -> fake worker
//    Reported: time to the first token and to the end of the stream (p50/p90/p99, mean) and
//    the router paths minus the direct one.
// 2. Streamed tokens per router CPU-second. S concurrent streams of M tokens each through the
//    router (HTTP SSE, then gRPC), and the same directly against the fake worker for reference,
//    in --rounds rounds (median reported, with the range). The router's CPU time comes from
//    /proc/<pid>/stat (utime + stime over the run).
//
// The fake worker runs as a separate process (this binary re-executed with --serve-fake-worker),
// so router, worker and client CPU are counted apart.
//
//   router_overhead_bench [--requests 1000] [--prompt-tokens 64] [--output-tokens 8]
//                         [--streams 64] [--stream-tokens 2000]
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/router/bench_util.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "expertmesh/v1/inference.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/router/fake_worker.h"
#include "tools/make_model/make_model.h"

namespace expertmesh::bench {
namespace {

namespace iv1 = ::expertmesh::internal::v1;
namespace pv1 = ::expertmesh::v1;

constexpr absl::Duration kStartTimeout = absl::Seconds(60);

// --serve-fake-worker: a FakeWorker until SIGTERM/SIGINT.
int ServeFakeWorker() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before gRPC starts its threads
  router::testing::FakeWorkerOptions options;
  options.total_kv_blocks = 1u << 24;  // never the limit: streams of thousands of tokens
  absl::StatusOr<std::unique_ptr<router::testing::FakeWorker>> worker =
      router::testing::FakeWorker::Start("127.0.0.1:0", options);
  if (!worker.ok()) {
    std::fprintf(stderr, "fake worker: %s\n", worker.status().ToString().c_str());
    return 1;
  }
  std::printf("fake-worker listening on %s\n", (*worker)->address().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  (*worker)->Shutdown();
  return 0;
}

std::string ModelDir(const std::string& scratch) {
  const std::string dir = scratch + "/model-qwen3-moe-tiny";
  if (std::filesystem::exists(dir + "/tokenizer.json") &&
      std::filesystem::exists(dir + "/config.json")) {
    return dir;
  }
  std::filesystem::create_directories(dir);
  make_model::MakeModelOptions o;
  o.arch = model::Architecture::kQwen3Moe;
  o.size = "tiny";
  o.out_dir = dir;
  o.seed = 7;
  o.force = true;
  absl::StatusOr<make_model::MakeModelResult> made = make_model::MakeModel(o);
  if (!made.ok()) {
    std::fprintf(stderr, "make-model: %s\n", made.status().ToString().c_str());
    std::exit(1);
  }
  return dir;
}

struct Timing {
  double ttft_s = -1;
  double total_s = -1;
  int64_t tokens = 0;
  bool ok = false;
  std::string error;
};

std::vector<int32_t> Prompt(int64_t n, int salt) {
  std::vector<int32_t> p;
  // Ids above the byte tokens: each detokenizes to a whole piece of text.
  for (int64_t i = 0; i < n; ++i) p.push_back(static_cast<int32_t>(300 + (i * 31 + salt) % 1500));
  return p;
}

// One Worker.Submit stream straight to the fake worker.
Timing Direct(iv1::Worker::Stub& stub, const std::vector<int32_t>& prompt, int64_t tokens,
              uint64_t id) {
  Timing t;
  grpc::ClientContext ctx;
  iv1::SubmitRequest req;
  req.set_request_id(absl::StrCat("direct-", id));
  req.mutable_prompt_token_ids()->Assign(prompt.begin(), prompt.end());
  req.mutable_sampling()->set_temperature(0);
  req.mutable_sampling()->set_top_p(1);
  req.mutable_sampling()->set_repetition_penalty(1);
  req.set_max_tokens(static_cast<uint32_t>(tokens));
  req.set_ignore_eos(true);
  const Clock::time_point t0 = Clock::now();
  auto reader = stub.Submit(&ctx, req);
  iv1::SubmitResponse resp;
  while (reader->Read(&resp)) {
    if (t.tokens == 0 && resp.tokens_size() > 0) t.ttft_s = SecondsSince(t0, Clock::now());
    t.tokens += resp.tokens_size();
  }
  const grpc::Status status = reader->Finish();
  t.ok = status.ok();
  if (!t.ok) t.error = absl::StrCat("gRPC ", status.error_code(), ": ", status.error_message());
  t.total_s = SecondsSince(t0, Clock::now());
  return t;
}

// One Inference.Generate stream through the router.
Timing RouterGrpc(pv1::Inference::Stub& stub, const std::vector<int32_t>& prompt, int64_t tokens) {
  Timing t;
  grpc::ClientContext ctx;
  pv1::GenerateRequest req;
  req.mutable_token_ids()->mutable_ids()->Assign(prompt.begin(), prompt.end());
  req.mutable_sampling()->set_temperature(0);
  req.mutable_stop()->set_max_tokens(static_cast<uint32_t>(tokens));
  req.mutable_stop()->set_ignore_eos(true);
  const Clock::time_point t0 = Clock::now();
  auto reader = stub.Generate(&ctx, req);
  pv1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    if (t.tokens == 0 && resp.tokens_size() > 0) t.ttft_s = SecondsSince(t0, Clock::now());
    t.tokens += resp.tokens_size();
  }
  const grpc::Status status = reader->Finish();
  t.ok = status.ok();
  if (!t.ok) t.error = absl::StrCat("gRPC ", status.error_code(), ": ", status.error_message());
  t.total_s = SecondsSince(t0, Clock::now());
  return t;
}

std::string HttpBody(const std::vector<int32_t>& prompt, int64_t tokens) {
  Json body = {{"model", "bench"},
               {"prompt", prompt},
               {"max_tokens", tokens},
               {"temperature", 0},
               {"ignore_eos", true},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  return body.dump();
}

Timing RouterHttp(httplib::Client& client, const std::string& body) {
  StreamResult r = StreamCompletion(client, body);
  Timing t;
  t.ok = r.status == 200 && r.done && r.error.empty();
  if (!t.ok) t.error = absl::StrCat("HTTP ", r.status, ": ", r.error, r.done ? "" : " (no [DONE])");
  t.ttft_s = r.ttft_s;
  t.total_s = r.total_s;
  t.tokens = r.completion_tokens;
  return t;
}

struct Dist {
  std::vector<double> ttft, total;
  int failed = 0;
  std::string first_error;
  void Add(const Timing& t) {
    if (!t.ok || t.ttft_s < 0) {
      if (failed++ == 0) first_error = t.error.empty() ? "no token" : t.error;
      return;
    }
    ttft.push_back(t.ttft_s);
    total.push_back(t.total_s);
  }
};

struct Throughput {
  std::string path;
  int64_t tokens = 0;
  int failed = 0;
  double wall_s = 0, router_cpu_s = 0, worker_cpu_s = 0, client_cpu_s = 0;
};

int Main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--serve-fake-worker") return ServeFakeWorker();
  const Flags f(
      argc, argv,
      {{"requests", "1000"},
       {"warmup", "100"},
       {"prompt-tokens", "64"},
       {"output-tokens", "8"},
       {"streams", "64"},
       {"stream-tokens", "2000"},
       {"rounds", "3"},
       {"routing", "prefix"},
       {"scratch", ExecutableDir() + "/../bench-scratch/router"}},
      "router_overhead_bench: the router's added latency and streamed tokens per CPU-second "
      "against the fake worker of tests/router (no model compute).");
  const std::string model_dir = ModelDir(f.Str("scratch"));
  const std::string bin = ExecutableDir();

  auto worker = Proc::Launch("fake-worker", {ExecutablePath(), "--serve-fake-worker"});
  if (!worker) return 1;
  const std::string address = worker->WaitFor("fake-worker listening on ", kStartTimeout);
  if (address.empty()) {
    std::fprintf(stderr, "fake worker did not start:\n%s\n", worker->StderrTail().c_str());
    return 1;
  }
  auto router = Proc::Launch(
      "router", {bin + "/expertmesh-router", "--model-dir", model_dir, "--model-name", "bench",
                 "--workers", address, "--host", "127.0.0.1", "--http-port", "0", "--grpc-port",
                 "0", "--routing", f.Str("routing"), "--grace-s", "2"});
  if (!router) return 1;
  const std::string http = router->WaitFor("HTTP listening on http://", kStartTimeout);
  const std::string grpc_addr = router->WaitFor("gRPC listening on ", kStartTimeout);
  if (http.empty() || grpc_addr.empty()) {
    std::fprintf(stderr, "router did not start:\n%s\n", router->StderrTail().c_str());
    return 1;
  }
  const int http_port = std::stoi(http.substr(http.rfind(':') + 1));
  if (!WaitHttpOk(http_port, "/readyz", kStartTimeout)) {
    std::fprintf(stderr, "router never ready\n");
    return 1;
  }

  auto worker_stub =
      iv1::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  auto router_stub =
      pv1::Inference::NewStub(grpc::CreateChannel(grpc_addr, grpc::InsecureChannelCredentials()));
  httplib::Client http_client("127.0.0.1", http_port);
  http_client.set_tcp_nodelay(true);
  http_client.set_read_timeout(60, 0);
  http_client.set_keep_alive(true);

  // 1. Latency, one request at a time, interleaved over the paths.
  const int64_t prompt_tokens = f.Int("prompt-tokens");
  const int64_t output_tokens = f.Int("output-tokens");
  const int64_t requests = f.Int("requests");
  std::printf(
      "latency: %lld sequential requests per path (+%lld warm-up), %lld prompt token ids, "
      "%lld output tokens, interleaved direct / router gRPC / router HTTP; router --routing %s; "
      "load average %s\n",
      static_cast<long long>(requests), static_cast<long long>(f.Int("warmup")),
      static_cast<long long>(prompt_tokens), static_cast<long long>(output_tokens),
      f.Str("routing").c_str(), LoadAverage().c_str());
  std::fflush(stdout);
  Dist direct, via_grpc, via_http;
  for (int64_t i = -f.Int("warmup"); i < requests; ++i) {
    // A different prompt each round (as users send); the fake worker caches block hashes only.
    const std::vector<int32_t> prompt = Prompt(prompt_tokens, static_cast<int>(i & 1023));
    const std::string body = HttpBody(prompt, output_tokens);
    const Timing d =
        Direct(*worker_stub, prompt, output_tokens, static_cast<uint64_t>(i + 1000000));
    const Timing g = RouterGrpc(*router_stub, prompt, output_tokens);
    const Timing h = RouterHttp(http_client, body);
    if (i < 0) continue;
    direct.Add(d);
    via_grpc.Add(g);
    via_http.Add(h);
  }
  auto row = [](const char* name, const Dist& d, const Dist* base) {
    const double t50 = Percentile(d.ttft, 50), t90 = Percentile(d.ttft, 90),
                 t99 = Percentile(d.ttft, 99), tm = Mean(d.ttft);
    const double e50 = Percentile(d.total, 50), e90 = Percentile(d.total, 90), em = Mean(d.total);
    std::string added = "-";
    if (base != nullptr) {
      added =
          absl::StrFormat("+%.0f / +%.0f / +%.0f", 1e6 * (t50 - Percentile(base->ttft, 50)),
                          1e6 * (tm - Mean(base->ttft)), 1e6 * (e50 - Percentile(base->total, 50)));
    }
    std::printf("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %d |\n", name,
                1e6 * t50, 1e6 * t90, 1e6 * t99, 1e6 * tm, 1e6 * e50, 1e6 * e90, 1e6 * em,
                added.c_str(), d.failed);
  };
  std::printf(
      "\n| path | TTFT p50 µs | TTFT p90 µs | TTFT p99 µs | TTFT mean µs | total p50 µs | "
      "total p90 µs | total mean µs | added vs direct: TTFT p50 / TTFT mean / total p50 µs | "
      "failed |\n|---|---|---|---|---|---|---|---|---|---|\n");
  row("direct (gRPC Worker.Submit)", direct, nullptr);
  row("router gRPC (Inference.Generate)", via_grpc, &direct);
  row("router HTTP (/v1/completions SSE)", via_http, &direct);
  for (const Dist* d : {&direct, &via_grpc, &via_http}) {
    if (d->failed > 0) std::fprintf(stderr, "first failure: %s\n", d->first_error.c_str());
  }
  std::fflush(stdout);

  // 2. Throughput: many concurrent streams of many tokens.
  const int streams = static_cast<int>(f.Int("streams"));
  const int64_t stream_tokens = f.Int("stream-tokens");
  std::printf(
      "\nthroughput: %d concurrent streams x %lld tokens (prompt %lld ids); load average %s\n",
      streams, static_cast<long long>(stream_tokens), static_cast<long long>(prompt_tokens),
      LoadAverage().c_str());
  std::fflush(stdout);
  // Rounds interleave the paths; each path's round with the median tokens per router CPU-second
  // is reported (the direct path: median wall tokens/s), with the range over the rounds.
  const int rounds = static_cast<int>(f.Int("rounds"));
  const std::vector<std::string> paths = {"router HTTP (SSE)", "router gRPC", "direct (no router)"};
  std::vector<std::vector<Throughput>> by_path(paths.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t pi = 0; pi < paths.size(); ++pi) {
      Throughput t;
      t.path = paths[pi];
      std::atomic<int64_t> tokens{0};
      std::atomic<int> failed{0};
      const double r0 = ProcessCpuSeconds(router->pid());
      const double w0 = ProcessCpuSeconds(worker->pid());
      const double c0 = SelfCpuSeconds();
      const Clock::time_point t0 = Clock::now();
      std::vector<std::thread> threads;
      for (int s = 0; s < streams; ++s) {
        threads.emplace_back([&, s] {
          const std::vector<int32_t> prompt = Prompt(prompt_tokens, 5000 + s);
          Timing r;
          if (pi == 0) {
            httplib::Client c("127.0.0.1", http_port);
            c.set_tcp_nodelay(true);
            c.set_read_timeout(300, 0);
            r = RouterHttp(c, HttpBody(prompt, stream_tokens));
          } else if (pi == 1) {
            r = RouterGrpc(*router_stub, prompt, stream_tokens);
          } else {
            r = Direct(*worker_stub, prompt, stream_tokens,
                       static_cast<uint64_t>(round * streams + s));
          }
          if (r.ok && r.tokens == stream_tokens) {
            tokens.fetch_add(r.tokens);
          } else {
            if (failed.fetch_add(1) == 0) {
              std::fprintf(stderr, "  %s: a stream failed after %lld tokens: %s\n",
                           paths[pi].c_str(), static_cast<long long>(r.tokens),
                           r.error.empty() ? "short stream" : r.error.c_str());
            }
            if (r.ok) tokens.fetch_add(std::max<int64_t>(r.tokens, 0));
          }
        });
      }
      for (auto& th : threads) th.join();
      t.wall_s = SecondsSince(t0, Clock::now());
      t.router_cpu_s = ProcessCpuSeconds(router->pid()) - r0;
      t.worker_cpu_s = ProcessCpuSeconds(worker->pid()) - w0;
      t.client_cpu_s = SelfCpuSeconds() - c0;
      t.tokens = tokens.load();
      t.failed = failed.load();
      by_path[pi].push_back(t);
    }
  }
  std::printf(
      "\n| path | tokens | wall s | tokens/s (wall) | router CPU s | tokens per router CPU-s | "
      "range over %d rounds | router cores busy | fake worker CPU s | client CPU s | "
      "failed streams |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
      rounds);
  int failed_streams = 0;
  for (size_t pi = 0; pi < paths.size(); ++pi) {
    const bool routed = pi < 2;
    std::vector<Throughput> v = by_path[pi];
    for (const Throughput& t : v) failed_streams += t.failed;
    auto score = [routed](const Throughput& t) {
      return routed ? t.tokens / t.router_cpu_s : t.tokens / t.wall_s;
    };
    std::sort(v.begin(), v.end(),
              [&](const Throughput& a, const Throughput& b) { return score(a) < score(b); });
    const Throughput& t = v[v.size() / 2];
    const std::string range =
        absl::StrFormat("%.0f..%.0f%s", score(v.front()), score(v.back()), routed ? "" : " tok/s");
    std::printf("| %s | %lld | %.2f | %.0f | %s | %s | %s | %s | %.2f | %.2f | %d |\n",
                t.path.c_str(), static_cast<long long>(t.tokens), t.wall_s, t.tokens / t.wall_s,
                routed ? absl::StrFormat("%.2f", t.router_cpu_s).c_str() : "-",
                routed ? absl::StrFormat("%.0f", score(t)).c_str() : "-", range.c_str(),
                routed ? absl::StrFormat("%.2f", t.router_cpu_s / t.wall_s).c_str() : "-",
                t.worker_cpu_s, t.client_cpu_s, t.failed);
  }
  std::printf(
      "\nmachine: %u hardware threads; client, router and fake worker share them. Load average "
      "at the end: %s\n",
      std::thread::hardware_concurrency(), LoadAverage().c_str());

  router->Stop();
  worker->Stop();
  const int bad = direct.failed + via_grpc.failed + via_http.failed + failed_streams;
  return bad == 0 ? 0 : 1;
}

}  // namespace
}  // namespace expertmesh::bench

int main(int argc, char** argv) { return expertmesh::bench::Main(argc, argv); }
