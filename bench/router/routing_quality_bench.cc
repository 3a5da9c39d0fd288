// Routing quality: a shared-prefix workload (many users, few system prompts) against a real
// expertmesh-router in front of real expertmesh-worker groups on loopback, once per routing
// policy (default: prefix affinity, then round robin), each time with freshly started workers so
// every policy starts from cold prefix caches. Every request is one of a few long system prompts
// followed by a short unique user suffix; the same seeded request sequence is replayed for every
// policy.
//
// Reported per policy: prefix-cache hit rate (usage.prompt_tokens_details.cached_tokens summed
// over prompt tokens: what the workers report as served from their prefix caches), client-side
// TTFT (send -> first SSE chunk) mean/p50/p90/p99, end-to-end latency, and throughput; then the
// ratio prefix / round-robin. The per-worker KV pool is sized (--kv-blocks, default: about 3/4 of
// all system prompts' blocks plus the running requests' own blocks) so that one group cannot keep
// every system prompt cached while the groups together can: the regime where routing decides the
// hit rate. Pass a large --kv-blocks to see the roomy-cache regime.
//
// The default model is a make-model "medium" Qwen3-MoE (hidden 1024, 8 layers, 874 MB, written
// once under build/bench-scratch/router): on one thread per worker a 200-400 token prefill takes
// seconds, so what the cache saves shows in TTFT and throughput. A default run takes ~2 min
// on 2 idle cores; --size small runs in ~10 s with the same shape of result, less pronounced.
//
//   routing_quality_bench [--size medium] [--requests 96] [--concurrency 8] [--kv-blocks N] ...
//   routing_quality_bench --help
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/router/bench_util.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "model/plan/kv_block_hash.h"
#include "tools/make_model/make_model.h"

namespace expertmesh::bench {
namespace {

namespace iv1 = ::expertmesh::internal::v1;

constexpr absl::Duration kStartTimeout = absl::Seconds(120);

struct Request {
  int system = 0;
  std::vector<int32_t> prompt;
};

struct Workload {
  std::vector<std::vector<int32_t>> systems;
  std::vector<Request> requests;
  int64_t prompt_tokens = 0;
  // Prompt tokens a perfect router with unbounded caches could serve from cache: every full
  // KV block of a system prompt, on every request but the first one of that system prompt.
  int64_t ideal_cached_tokens = 0;
};

Workload MakeWorkload(const Flags& f, int64_t vocab, int64_t block) {
  std::mt19937_64 rng(static_cast<uint64_t>(f.Int("seed")));
  const int s = static_cast<int>(f.Int("system-prompts"));
  const int64_t lo = f.Int("min-system-tokens"), hi = f.Int("max-system-tokens");
  // Token ids away from the byte tokens at the bottom and the special tokens at the top.
  std::uniform_int_distribution<int32_t> token(300, static_cast<int32_t>(vocab - 300));
  Workload w;
  for (int i = 0; i < s; ++i) {
    const int64_t len = s == 1 ? lo : lo + (hi - lo) * i / (s - 1);  // evenly spread lengths
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (int32_t& t : p) t = token(rng);
    w.systems.push_back(std::move(p));
  }
  const int64_t n = f.Int("requests");
  std::vector<int> order;
  for (int64_t i = 0; i < n; ++i) order.push_back(static_cast<int>(i % s));  // equal shares
  std::shuffle(order.begin(), order.end(), rng);
  std::uniform_int_distribution<int64_t> user_len(f.Int("min-user-tokens"),
                                                  f.Int("max-user-tokens"));
  std::vector<bool> seen(static_cast<size_t>(s), false);
  for (int sys : order) {
    Request r;
    r.system = sys;
    r.prompt = w.systems[sys];
    for (int64_t k = user_len(rng); k > 0; --k) r.prompt.push_back(token(rng));
    w.prompt_tokens += static_cast<int64_t>(r.prompt.size());
    if (seen[sys])
      w.ideal_cached_tokens += static_cast<int64_t>(w.systems[sys].size()) / block * block;
    seen[sys] = true;
    w.requests.push_back(std::move(r));
  }
  return w;
}

struct Sample {
  StreamResult r;
  int system = 0;
};

struct PolicyResult {
  std::string policy;
  std::vector<Sample> samples;
  double wall_s = 0;
  int64_t kv_blocks = 0;
  double router_cpu_s = 0;
  std::vector<double> worker_cpu_s;
  // Per worker, at the end of the run: how many of each system prompt's full blocks its
  // LoadReport lists as cached (the worker reports its 256 most recently used block hashes).
  std::vector<std::vector<int64_t>> cached_system_blocks;
  bool ok = false;
};

std::string ModelDir(const Flags& f) {
  if (!f.Str("model").empty()) return f.Str("model");
  const std::string dir = absl::StrCat(f.Str("scratch"), "/model-qwen3-moe-", f.Str("size"));
  if (std::filesystem::exists(dir + "/config.json") &&
      std::filesystem::exists(dir + "/model.safetensors")) {
    return dir;  // make-model output is a pure function of its options: reuse it
  }
  std::filesystem::create_directories(dir);
  make_model::MakeModelOptions o;
  o.arch = model::Architecture::kQwen3Moe;
  o.size = f.Str("size");
  o.out_dir = dir;
  o.seed = 7;
  o.force = true;
  std::printf("making a %s qwen3-moe model in %s ...\n", o.size.c_str(), dir.c_str());
  std::fflush(stdout);
  absl::StatusOr<make_model::MakeModelResult> made = make_model::MakeModel(o);
  if (!made.ok()) {
    std::fprintf(stderr, "make-model: %s\n", made.status().ToString().c_str());
    std::exit(1);
  }
  return dir;
}

struct ModelFacts {
  int64_t vocab = 0;
  // bf16 K and V over all layers, for MHA/GQA layouts (an MLA model's latent cache is smaller:
  // there the KV blocks column, read back from the workers, is what counts).
  int64_t kv_bytes_per_token = 0;
  int64_t weight_bytes = 0;
  std::string shape;
};

ModelFacts ReadModel(const std::string& dir) {
  std::ifstream in(dir + "/config.json");
  Json c = Json::parse(in);
  ModelFacts m;
  m.vocab = c.value("vocab_size", int64_t{0});
  const int64_t layers = c.value("num_hidden_layers", int64_t{0});
  const int64_t heads = c.value("num_attention_heads", int64_t{1});
  const int64_t kv_heads = c.value("num_key_value_heads", heads);
  const int64_t hidden = c.value("hidden_size", int64_t{0});
  const int64_t head_dim = c.value("head_dim", hidden / heads);
  m.kv_bytes_per_token = layers * 2 * kv_heads * head_dim * 2;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".safetensors")
      m.weight_bytes += static_cast<int64_t>(e.file_size());
  }
  m.shape = absl::StrCat("hidden ", hidden, ", ", layers, " layers, ",
                         c.value("num_experts", int64_t{0}), " experts top-",
                         c.value("num_experts_per_tok", int64_t{0}), ", vocab ", m.vocab);
  return m;
}

// Full blocks of each system prompt found in the worker's reported prefix hashes.
std::vector<int64_t> CachedSystemBlocks(const std::string& address, const Workload& w,
                                        int64_t block) {
  auto stub =
      iv1::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  iv1::LoadReport report;
  std::vector<int64_t> out(w.systems.size(), -1);
  if (!stub->GetLoad(&ctx, iv1::GetLoadRequest(), &report).ok()) return out;
  const absl::flat_hash_set<uint64_t> cached(report.cached_prefix_hashes().begin(),
                                             report.cached_prefix_hashes().end());
  for (size_t i = 0; i < w.systems.size(); ++i) {
    out[i] = 0;
    for (uint64_t h : model::HashFullKvBlocks(w.systems[i], static_cast<int>(block))) {
      if (cached.contains(h)) ++out[i];
    }
  }
  return out;
}

// A short request straight to a worker (gRPC), so the first measured request does not pay for
// page faults and first-touch allocations. Its prompt shares no block with the workload.
void WarmUp(const std::string& address, int index) {
  auto stub =
      iv1::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  iv1::SubmitRequest req;
  // Workers accept only router-format ids (model/request/request_id.h).
  req.set_request_id(absl::StrFormat("rq-%032x", index));
  for (int i = 0; i < 48; ++i) req.add_prompt_token_ids(260 + (i * 7 + index * 13) % 40);
  req.set_max_tokens(4);
  req.set_ignore_eos(true);
  req.mutable_sampling()->set_temperature(0);
  auto reader = stub->Submit(&ctx, req);
  iv1::SubmitResponse resp;
  while (reader->Read(&resp)) {
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok())
    std::fprintf(stderr, "warm-up on %s: %s\n", address.c_str(), s.error_message().c_str());
}

bool AllGroupsUp(const std::string& metrics) {
  int up = 0, down = 0;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (!absl::StartsWith(line, "expertmesh_worker_group_up{")) continue;
    if (absl::EndsWith(line, " 1"))
      ++up;
    else
      ++down;
  }
  return up > 0 && down == 0;
}

PolicyResult RunPolicy(const Flags& f, const std::string& policy, const std::string& model_dir,
                       const ModelFacts& facts, int64_t kv_blocks, const Workload& w) {
  PolicyResult result;
  result.policy = policy;
  const std::string bin = ExecutableDir();
  const int groups = static_cast<int>(f.Int("groups"));
  const int64_t block = f.Int("block-size");
  const int64_t kv_budget = kv_blocks * block * facts.kv_bytes_per_token;
  std::vector<std::unique_ptr<Proc>> workers;
  std::vector<std::string> addresses;
  for (int g = 0; g < groups; ++g) {
    workers.push_back(
        Proc::Launch(absl::StrCat(policy, "/worker", g),
                     {bin + "/expertmesh-worker", "--model", model_dir, "--host", "127.0.0.1",
                      "--port", "0", "--threads", f.Str("threads"), "--kv-budget",
                      absl::StrCat(kv_budget), "--block-size", absl::StrCat(block),
                      "--compute-dtype", "bf16", "--max-model-len", "4096", "--grace-s", "2"}));
    if (!workers.back()) return result;
  }
  for (int g = 0; g < groups; ++g) {
    const std::string address =
        workers[g]->WaitFor("expertmesh-worker: listening on ", kStartTimeout);
    if (address.empty()) {
      std::fprintf(stderr, "worker %d did not start:\n%s\n", g, workers[g]->StderrTail().c_str());
      return result;
    }
    addresses.push_back(address);
    // "expertmesh-worker: model NAME, N KV blocks, context C"
    const std::string line = workers[g]->WaitFor("expertmesh-worker: model ", absl::Seconds(1));
    const size_t end = line.find(" KV blocks");
    const size_t begin = line.rfind(' ', end == std::string::npos ? 0 : end - 1);
    int64_t n = 0;
    if (end != std::string::npos && begin != std::string::npos &&
        absl::SimpleAtoi(line.substr(begin + 1, end - begin - 1), &n)) {
      result.kv_blocks = n;
    }
  }
  {
    std::vector<std::thread> warm;
    for (int g = 0; g < groups; ++g) warm.emplace_back([&, g] { WarmUp(addresses[g], g); });
    for (auto& t : warm) t.join();
  }
  auto router = Proc::Launch(
      absl::StrCat(policy, "/router"),
      {bin + "/expertmesh-router", "--model-dir", model_dir, "--model-name", "bench", "--workers",
       absl::StrJoin(addresses, ","), "--host", "127.0.0.1", "--http-port", "0", "--grpc-port",
       "-1", "--routing", policy, "--poll-ms", f.Str("poll-ms"), "--grace-s", "2"});
  if (!router) return result;
  const std::string url = router->WaitFor("HTTP listening on http://", kStartTimeout);
  const size_t colon = url.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "router did not start:\n%s\n", router->StderrTail().c_str());
    return result;
  }
  const int port = std::stoi(url.substr(colon + 1));
  if (!WaitHttpOk(port, "/metrics", kStartTimeout, &AllGroupsUp)) {
    std::fprintf(stderr, "router never saw all groups up\n");
    return result;
  }

  const double router_cpu0 = ProcessCpuSeconds(router->pid());
  std::vector<double> worker_cpu0;
  for (auto& wk : workers) worker_cpu0.push_back(ProcessCpuSeconds(wk->pid()));
  result.samples.resize(w.requests.size());
  std::atomic<size_t> next{0};
  const int concurrency = static_cast<int>(f.Int("concurrency"));
  const Clock::time_point t0 = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(300, 0);
      client.set_tcp_nodelay(true);
      for (size_t i; (i = next.fetch_add(1)) < w.requests.size();) {
        Json body = {{"model", "bench"},
                     {"prompt", w.requests[i].prompt},
                     {"max_tokens", f.Int("max-tokens")},
                     {"temperature", 0},
                     {"ignore_eos", true},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}}};
        result.samples[i].r = StreamCompletion(client, body.dump());
        result.samples[i].system = w.requests[i].system;
      }
    });
  }
  for (auto& t : clients) t.join();
  result.wall_s = SecondsSince(t0, Clock::now());
  result.router_cpu_s = ProcessCpuSeconds(router->pid()) - router_cpu0;
  for (size_t g = 0; g < workers.size(); ++g) {
    result.worker_cpu_s.push_back(ProcessCpuSeconds(workers[g]->pid()) - worker_cpu0[g]);
  }
  for (const std::string& address : addresses) {
    result.cached_system_blocks.push_back(CachedSystemBlocks(address, w, block));
  }
  router->Stop();
  for (auto& wk : workers) wk->Stop();
  result.ok = true;
  return result;
}

struct Summary {
  int64_t ok = 0, failed = 0, prompt = 0, cached = 0, completion = 0;
  double hit_rate = 0, ttft_mean = 0, ttft_p50 = 0, ttft_p90 = 0, ttft_p99 = 0, e2e_mean = 0;
  double ttft_hit_p50 = NAN, ttft_miss_p50 = NAN;
  int64_t hits = 0, misses = 0;
  double req_s = 0, tok_s = 0, prompt_tok_s = 0;
};

// Milliseconds, or "-" when there was no sample.
std::string Ms(double seconds) {
  return std::isnan(seconds) ? std::string("-") : absl::StrFormat("%.0f", 1e3 * seconds);
}

// Over the requests sent from `first` on (send order is index order).
Summary Summarize(const PolicyResult& p, size_t first = 0) {
  Summary s;
  std::vector<double> ttft, e2e, ttft_hit, ttft_miss;
  for (size_t i = first; i < p.samples.size(); ++i) {
    const StreamResult& r = p.samples[i].r;
    if (r.status != 200 || !r.done || !r.error.empty() || r.ttft_s < 0) {
      ++s.failed;
      continue;
    }
    ++s.ok;
    s.prompt += std::max<int64_t>(r.prompt_tokens, 0);
    s.cached += std::max<int64_t>(r.cached_tokens, 0);
    s.completion += std::max<int64_t>(r.completion_tokens, 0);
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.total_s);
    if (r.cached_tokens > 0) {
      ttft_hit.push_back(r.ttft_s);
      ++s.hits;
    } else {
      ttft_miss.push_back(r.ttft_s);
      ++s.misses;
    }
  }
  s.hit_rate = s.prompt > 0 ? static_cast<double>(s.cached) / static_cast<double>(s.prompt) : 0;
  s.ttft_mean = Mean(ttft);
  s.ttft_p50 = Percentile(ttft, 50);
  s.ttft_p90 = Percentile(ttft, 90);
  s.ttft_p99 = Percentile(ttft, 99);
  s.e2e_mean = Mean(e2e);
  s.ttft_hit_p50 = Percentile(ttft_hit, 50);
  s.ttft_miss_p50 = Percentile(ttft_miss, 50);
  s.req_s = static_cast<double>(s.ok) / p.wall_s;
  s.tok_s = static_cast<double>(s.completion) / p.wall_s;
  s.prompt_tok_s = static_cast<double>(s.prompt) / p.wall_s;
  return s;
}

int Main(int argc, char** argv) {
  const Flags f(
      argc, argv,
      {{"size", "medium"},
       {"model", ""},
       {"groups", "2"},
       {"threads", "1"},
       {"system-prompts", "4"},
       {"min-system-tokens", "200"},
       {"max-system-tokens", "400"},
       {"min-user-tokens", "8"},
       {"max-user-tokens", "32"},
       {"requests", "96"},
       {"concurrency", "8"},
       {"max-tokens", "16"},
       {"kv-blocks", "0"},
       {"block-size", "16"},
       {"poll-ms", "100"},
       {"policies", "prefix,round-robin"},
       {"seed", "1"},
       {"scratch", ExecutableDir() + "/../bench-scratch/router"}},
      "routing_quality_bench: shared-prefix workload through expertmesh-router over real\n"
      "expertmesh-worker groups, once per routing policy with cold caches each time.\n"
      "--kv-blocks 0 sizes each worker's KV pool to ~3/4 of all system prompts' blocks plus\n"
      "the running requests' own blocks; --model DIR uses an existing model directory.");
  const std::string model_dir = ModelDir(f);
  const ModelFacts facts = ReadModel(model_dir);
  const int64_t block = f.Int("block-size");
  const Workload w = MakeWorkload(f, facts.vocab, block);
  int64_t system_blocks = 0;
  for (const auto& s : w.systems) system_blocks += static_cast<int64_t>(s.size()) / block;
  int64_t kv_blocks = f.Int("kv-blocks");
  if (kv_blocks <= 0) {
    // Per running request: its partial last system block, user suffix and output.
    const int64_t own = (block + f.Int("max-user-tokens") + f.Int("max-tokens")) / block + 1;
    const int64_t running = (f.Int("concurrency") + f.Int("groups") - 1) / f.Int("groups");
    kv_blocks = system_blocks * 3 / 4 + running * own;
  }
  const std::vector<std::string> policies = absl::StrSplit(f.Str("policies"), ',');

  std::printf("model %s: %s, %.1f MB of weights\n", model_dir.c_str(), facts.shape.c_str(),
              facts.weight_bytes / 1e6);
  std::vector<std::string> lens;
  for (const auto& s : w.systems) lens.push_back(absl::StrCat(s.size()));
  std::printf(
      "workload: %zu requests, concurrency %lld, %zu system prompts (%s tokens = %lld KV blocks "
      "of %lld) + %lld..%lld-token unique suffix, max_tokens %lld (greedy, ignore_eos)\n",
      w.requests.size(), static_cast<long long>(f.Int("concurrency")), w.systems.size(),
      absl::StrJoin(lens, "/").c_str(), static_cast<long long>(system_blocks),
      static_cast<long long>(block), static_cast<long long>(f.Int("min-user-tokens")),
      static_cast<long long>(f.Int("max-user-tokens")),
      static_cast<long long>(f.Int("max-tokens")));
  std::printf(
      "cluster: %lld worker groups x 1 rank, --threads %s, KV pool %lld blocks per worker "
      "(%.1f MB), router poll %s ms; ideal hit rate (each system prompt prefilled once) %.1f%%\n",
      static_cast<long long>(f.Int("groups")), f.Str("threads").c_str(),
      static_cast<long long>(kv_blocks), kv_blocks * block * facts.kv_bytes_per_token / 1e6,
      f.Str("poll-ms").c_str(),
      100.0 * static_cast<double>(w.ideal_cached_tokens) / static_cast<double>(w.prompt_tokens));
  std::fflush(stdout);

  std::vector<PolicyResult> results;
  for (const std::string& policy : policies) {
    std::printf("running --routing %s (load average %s) ...\n", policy.c_str(),
                LoadAverage().c_str());
    std::fflush(stdout);
    results.push_back(RunPolicy(f, policy, model_dir, facts, kv_blocks, w));
    if (!results.back().ok) {
      std::fprintf(stderr, "policy %s failed to run\n", policy.c_str());
      return 1;
    }
  }

  std::vector<Summary> sums;
  for (const PolicyResult& p : results) sums.push_back(Summarize(p));
  std::printf(
      "\n| policy | ok/failed | KV blocks/worker | prefix hit rate | requests with a hit | "
      "TTFT mean ms | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | TTFT p50 hit / miss ms | "
      "e2e mean ms | req/s | output tok/s | prompt tok/s | wall s | router CPU s | worker CPU s |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < results.size(); ++i) {
    const Summary& s = sums[i];
    const PolicyResult& p = results[i];
    std::vector<std::string> wcpu;
    for (double c : p.worker_cpu_s) wcpu.push_back(absl::StrFormat("%.1f", c));
    std::printf(
        "| %s | %lld/%lld | %lld | %.1f%% | %lld/%lld | %.0f | %.0f | %.0f | %.0f | %s / %s | "
        "%.0f | %.2f | %.1f | %.0f | %.1f | %.2f | %s |\n",
        p.policy.c_str(), static_cast<long long>(s.ok), static_cast<long long>(s.failed),
        static_cast<long long>(p.kv_blocks), 100 * s.hit_rate, static_cast<long long>(s.hits),
        static_cast<long long>(s.ok), 1e3 * s.ttft_mean, 1e3 * s.ttft_p50, 1e3 * s.ttft_p90,
        1e3 * s.ttft_p99, Ms(s.ttft_hit_p50).c_str(), Ms(s.ttft_miss_p50).c_str(), 1e3 * s.e2e_mean,
        s.req_s, s.tok_s, s.prompt_tok_s, p.wall_s, p.router_cpu_s,
        absl::StrJoin(wcpu, " + ").c_str());
  }
  std::printf("\nsystem prompts cached at the end (full blocks per system prompt, per worker):\n");
  for (const PolicyResult& p : results) {
    std::vector<std::string> per_worker;
    for (const auto& blocks : p.cached_system_blocks) {
      per_worker.push_back(absl::StrCat("[", absl::StrJoin(blocks, " "), "]"));
    }
    std::printf("  %s: %s\n", p.policy.c_str(), absl::StrJoin(per_worker, " ").c_str());
  }
  // The second half of the requests by send order: after the cold start, when every system
  // prompt has been prefilled somewhere at least once.
  const size_t half = w.requests.size() / 2;
  std::vector<Summary> late;
  for (const PolicyResult& p : results) late.push_back(Summarize(p, half));
  std::printf(
      "\nsecond half (requests %zu..%zu by send order, after the cold start):\n\n"
      "| policy | prefix hit rate | requests with a hit | TTFT mean ms | TTFT p50 ms | "
      "TTFT p90 ms | TTFT p99 ms | TTFT p50 hit / miss ms | e2e mean ms |\n"
      "|---|---|---|---|---|---|---|---|---|\n",
      half + 1, w.requests.size());
  for (size_t i = 0; i < results.size(); ++i) {
    const Summary& s = late[i];
    std::printf("| %s | %.1f%% | %lld/%lld | %.0f | %.0f | %.0f | %.0f | %s / %s | %.0f |\n",
                results[i].policy.c_str(), 100 * s.hit_rate, static_cast<long long>(s.hits),
                static_cast<long long>(s.ok), 1e3 * s.ttft_mean, 1e3 * s.ttft_p50, 1e3 * s.ttft_p90,
                1e3 * s.ttft_p99, Ms(s.ttft_hit_p50).c_str(), Ms(s.ttft_miss_p50).c_str(),
                1e3 * s.e2e_mean);
  }
  // Ratios of the first policy to each other one (default: prefix vs round-robin).
  for (size_t i = 1; i < results.size(); ++i) {
    const Summary& a = sums[0];
    const Summary& b = sums[i];
    std::printf(
        "\n%s / %s, all requests: hit rate %.1f%% vs %.1f%% (%.2fx), TTFT mean %.2fx, p50 %.2fx, "
        "p90 %.2fx (lower is better), throughput %.2fx (req/s), wall %.2fx\n",
        results[0].policy.c_str(), results[i].policy.c_str(), 100 * a.hit_rate, 100 * b.hit_rate,
        b.hit_rate > 0 ? a.hit_rate / b.hit_rate : INFINITY, a.ttft_mean / b.ttft_mean,
        a.ttft_p50 / b.ttft_p50, a.ttft_p90 / b.ttft_p90, a.req_s / b.req_s,
        results[0].wall_s / results[i].wall_s);
    const Summary& c = late[0];
    const Summary& d = late[i];
    std::printf(
        "%s / %s, second half:  hit rate %.1f%% vs %.1f%% (%.2fx), TTFT mean %.2fx, p50 %.2fx, "
        "p90 %.2fx\n",
        results[0].policy.c_str(), results[i].policy.c_str(), 100 * c.hit_rate, 100 * d.hit_rate,
        d.hit_rate > 0 ? c.hit_rate / d.hit_rate : INFINITY, c.ttft_mean / d.ttft_mean,
        c.ttft_p50 / d.ttft_p50, c.ttft_p90 / d.ttft_p90);
  }
  std::printf("load average at the end: %s (2 cores: above ~2 means other work ran too)\n",
              LoadAverage().c_str());
  std::printf(
      "\nhit rate = sum(usage.prompt_tokens_details.cached_tokens) / sum(prompt_tokens), as the "
      "workers report them (a lower bound: a worker reports 0 for requests it could not attribute "
      "exactly, e.g. in a step with a preemption).\n");
  for (const Summary& s : sums) {
    if (s.failed > 0) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace expertmesh::bench

int main(int argc, char** argv) { return expertmesh::bench::Main(argc, argv); }
