// Scheduler cost per decode step with `batch` running requests (Schedule plus
// ProcessStepOutputs, KV bookkeeping included), the host time every step adds. The pool is
// large enough that nothing is preempted.
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "worker/kv/kv_cache_manager.h"
#include "worker/scheduler/scheduler.h"

namespace expertmesh::scheduler {
namespace {

void BM_DecodeStep(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  auto kv = kv::KvCacheManager::Create({.num_blocks = 65536, .block_size = 16});
  auto s = Scheduler::Create({.max_num_batched_tokens = 8192,
                              .max_num_seqs = 256,
                              .max_model_len = 32768,
                              .vocab_size = 151936},
                             &*kv);
  Scheduler& scheduler = **s;
  for (int i = 0; i < batch; ++i) {
    std::vector<int32_t> prompt(200 + i);
    for (size_t t = 0; t < prompt.size(); ++t) prompt[t] = static_cast<int32_t>(t * 13 + i);
    absl::Status status = scheduler.Submit(
        {.id = "r" + std::to_string(i), .prompt = prompt, .max_tokens = 30000, .ignore_eos = true});
    if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
  }
  std::vector<sampling::SampledToken> sampled;
  // Runs one step; returns how many requests sampled.
  auto step = [&] {
    StepPlan plan = scheduler.Schedule();
    sampled.assign(plan.NumToSample(), {.token = 5});
    auto updates = scheduler.ProcessStepOutputs(plan, sampled);
    return updates.ok() ? static_cast<int>(updates->size()) : -1;
  };
  // Prefill everything (several steps when the prompts exceed the token budget).
  while (step() != batch) {
  }
  for (auto _ : state) {
    if (step() != batch) state.SkipWithError("a request left decode: not a full decode step");
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
// Fixed iterations: the requests must stay in decode (no finish, no preemption).
BENCHMARK(BM_DecodeStep)->Arg(1)->Arg(8)->Arg(32)->Arg(128)->Iterations(2000);

}  // namespace
}  // namespace expertmesh::scheduler
