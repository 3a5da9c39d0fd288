// Sampling cost per token over a Qwen-sized vocabulary (151936), for each parameter mix the
// API offers. A decode step of batch B pays this B times on the host.
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "worker/sampling/sampler.h"

namespace expertmesh::sampling {
namespace {

constexpr int kVocab = 151936;

std::vector<float> Logits() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(kVocab);
  for (float& l : logits) l = normal(rng);
  return logits;
}

void Run(benchmark::State& state, SamplingParams params) {
  const std::vector<float> logits = Logits();
  std::vector<int32_t> prompt(512), output(128);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(i * 97 % kVocab);
  for (size_t i = 0; i < output.size(); ++i) output[i] = static_cast<int32_t>(i * 31 % kVocab);
  Sampler sampler;
  for (auto _ : state) {
    auto token = sampler.Sample(logits, params, {prompt, output});
    benchmark::DoNotOptimize(token);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kVocab * sizeof(float));
}

void BM_Greedy(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0;
  Run(state, p);
}
void BM_Temperature(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.seed = 1;
  Run(state, p);
}
void BM_TopKTopP(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 50;
  p.top_p = 0.9f;
  p.seed = 1;
  Run(state, p);
}
void BM_TopPOnly(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_p = 0.95f;
  p.seed = 1;
  Run(state, p);
}
void BM_PenaltiesAndLogprobs(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_p = 0.9f;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.5f;
  p.logprobs = true;
  p.top_logprobs = 5;
  p.seed = 1;
  Run(state, p);
}
BENCHMARK(BM_Greedy);
BENCHMARK(BM_Temperature);
BENCHMARK(BM_TopKTopP);
BENCHMARK(BM_TopPOnly);
BENCHMARK(BM_PenaltiesAndLogprobs);

}  // namespace
}  // namespace expertmesh::sampling
