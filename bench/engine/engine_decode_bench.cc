// Throughput of the whole engine (scheduler + forward + sampling) on a make-model Qwen3-MoE
// checkpoint: decode at batch 1, 8 and 32 and prefill, beside the memory-bandwidth roofline of
// batch 1: bytes of weights one decode token reads (dense weights, lm_head, top_k experts per
// layer) over the read bandwidth measured in the same run.
//   engine_decode_bench MODEL_DIR [threads] [steps]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "worker/engine/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

// Read bandwidth (bytes/s): sum a 1 GiB buffer with `threads` threads, best of 3.
double MeasureReadBandwidth(int threads) {
  const size_t n = (1ull << 30) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n, 1);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<uint64_t> sums(threads);
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = n * t / threads; i + 3 < n * (t + 1) / threads; i += 4) {
          s0 += buf[i];
          s1 += buf[i + 1];
          s2 += buf[i + 2];
          s3 += buf[i + 3];
        }
        sums[t] = s0 + s1 + s2 + s3;
      });
    }
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (sums[0] == 42) std::puts("");  // keep the loads
    best = std::max(best, n * sizeof(uint64_t) / s);
  }
  return best;
}

// Tokens per second of decode steps with `batch` requests already past their prefill.
double DecodeTokensPerSecond(expertmesh::engine::Engine& e, int batch, int steps) {
  const int64_t vocab = e.config().vocab_size;
  static int round = 0;
  ++round;
  for (int r = 0; r < batch; ++r) {
    expertmesh::scheduler::GenerationRequest req;
    req.id = std::to_string(round) + "-" + std::to_string(r);
    for (int i = 0; i < 32; ++i) req.prompt.push_back((i * 37 + r * 101 + round * 7) % vocab);
    req.sampling.temperature = 0;
    req.max_tokens = steps + 2;
    req.ignore_eos = true;
    if (!e.AddRequest(req).ok()) std::abort();
  }
  // Prefill (and the first token) outside the timed loop.
  if (!e.Step().ok()) std::abort();
  int64_t tokens = 0;
  const auto t0 = Clock::now();
  for (int s = 0; s < steps; ++s) {
    auto out = e.Step();
    if (!out.ok()) std::abort();
    tokens += static_cast<int64_t>(out->size());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  while (e.HasWork()) (void)e.Step();
  return tokens / secs;
}

// Prompt tokens per second: `prompts` prompts of `len` tokens prefilled (chunked by the
// scheduler's token budget) until each has its first token.
double PrefillTokensPerSecond(expertmesh::engine::Engine& e, int prompts, int len) {
  const int64_t vocab = e.config().vocab_size;
  for (int r = 0; r < prompts; ++r) {
    expertmesh::scheduler::GenerationRequest req;
    req.id = "prefill-" + std::to_string(r);
    for (int i = 0; i < len; ++i) req.prompt.push_back((i * 53 + r * 211 + 3) % vocab);
    req.sampling.temperature = 0;
    req.max_tokens = 1;
    req.ignore_eos = true;
    if (!e.AddRequest(req).ok()) std::abort();
  }
  const auto t0 = Clock::now();
  while (e.HasWork()) {
    if (!e.Step().ok()) std::abort();
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(prompts) * len / secs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [threads] [steps]\n", argv[0]);
    return 2;
  }
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 32;
  expertmesh::engine::EngineOptions o;
  o.compute_dtype = expertmesh::DType::kBF16;
  o.num_threads = threads;
  o.max_model_len = 1024;
  auto e = expertmesh::engine::Engine::Create(argv[1], o);
  if (!e.ok()) {
    std::fprintf(stderr, "%s\n", e.status().ToString().c_str());
    return 1;
  }
  const double bw = MeasureReadBandwidth(threads);
  const double active = static_cast<double>((*e)->model().active_weight_bytes_per_token());
  DecodeTokensPerSecond(**e, 1, 4);  // warm-up: page in the weights
  const double b1 = DecodeTokensPerSecond(**e, 1, steps);
  const double b8 = DecodeTokensPerSecond(**e, 8, steps);
  const double b32 = DecodeTokensPerSecond(**e, 32, steps);
  const double prefill = PrefillTokensPerSecond(**e, 8, 256);
  const double roofline = bw / active;
  std::printf("weights %.1f MB, active per token %.1f MB, read bandwidth %.1f GB/s (%d threads)\n",
              (*e)->model().weight_bytes() / 1e6, active / 1e6, bw / 1e9, threads);
  std::printf(
      "batch 1 roofline %.1f tok/s; decode batch 1: %.1f tok/s (%.0f%% of roofline, "
      "%.1f GB/s of weights)\n",
      roofline, b1, 100 * b1 / roofline, b1 * active / 1e9);
  std::printf("decode batch 8: %.1f tok/s (%.1fx batch 1)\n", b8, b8 / b1);
  std::printf("decode batch 32: %.1f tok/s (%.1fx batch 1)\n", b32, b32 / b1);
  std::printf("prefill (8 prompts x 256 tokens): %.1f tok/s\n", prefill);
  return 0;
}
