// A StepEngine double for service tests: the real Scheduler and KvCacheManager (so admission,
// validation, abort and block accounting are real), with a scripted "model" whose next token
// is (last token + 1) % vocab. Steps can be rationed (AllowSteps) so tests decide exactly how
// far a request gets, and a step can be made to fail.
#ifndef EXPERTMESH_TESTS_WORKER_SERVER_FAKE_STEP_ENGINE_H_
#define EXPERTMESH_TESTS_WORKER_SERVER_FAKE_STEP_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "worker/kv/kv_cache_manager.h"
#include "worker/scheduler/scheduler.h"
#include "worker/serving/step_engine.h"

namespace expertmesh::server::testing {

struct FakeEngineConfig {
  int32_t vocab_size = 1000;
  std::vector<int32_t> eos = {999};
  int32_t num_blocks = 256;
  int32_t block_size = 4;
  int64_t max_model_len = 512;
  int64_t max_batched_tokens = 256;
  int32_t max_running = 64;
};

// The token the fake model produces after `last`.
inline int32_t FakeNextToken(int32_t last, int32_t vocab) { return (last + 1) % vocab; }

// The fake model's prompt logprobs: after `prev`, token FakeNextToken(prev) + d (mod vocab) has
// rank d + 1 and logprob -0.5 (d + 1); `token` is scored with the k most likely alternatives.
inline sampling::PromptLogprob FakePromptLogprob(int32_t prev, int32_t token, int32_t k,
                                                 int32_t vocab) {
  const int32_t next = FakeNextToken(prev, vocab);
  const int32_t d = ((token - next) % vocab + vocab) % vocab;
  sampling::PromptLogprob p{.token = token, .logprob = -0.5f * (d + 1), .rank = d + 1};
  for (int32_t j = 0; j < k; ++j) p.top_logprobs.push_back({(next + j) % vocab, -0.5f * (j + 1)});
  return p;
}

class FakeStepEngine final : public StepEngine {
 public:
  static std::unique_ptr<FakeStepEngine> Create(const FakeEngineConfig& config);

  // Thread-safe controls (the engine runs on the loop's thread).
  // nullopt: steps run freely; n: n more steps may run, then Step() makes no progress.
  void SetStepBudget(std::optional<int64_t> steps);
  void AllowSteps(int64_t steps);
  // The next step returns `status` (once).
  void FailNextStep(absl::Status status);
  int64_t StepsRun() const;
  // Requests accepted by AddRequest so far.
  int64_t RequestsAdded() const { return requests_added_.load(); }

  EngineInfo Info() const override;
  absl::Status AddRequest(scheduler::GenerationRequest request) override;
  absl::Status Abort(const std::string& id) override;
  bool HasWork() const override { return scheduler_->HasWork(); }
  absl::StatusOr<std::vector<StepOutput>> Step() override;
  EngineLoad Load() const override;

 private:
  explicit FakeStepEngine(const FakeEngineConfig& config, kv::KvCacheManager kv)
      : config_(config), kv_(std::move(kv)) {}

  // Waits briefly for a step permit; false when none came (no progress this call).
  bool TakePermit();

  const FakeEngineConfig config_;
  kv::KvCacheManager kv_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  absl::flat_hash_set<std::string> reported_cached_;          // ids whose first output went out
  absl::flat_hash_map<std::string, int64_t> first_position_;  // until the first output

  std::atomic<int64_t> requests_added_{0};

  mutable absl::Mutex mu_;
  std::optional<int64_t> budget_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_next_ ABSL_GUARDED_BY(mu_);
  int64_t steps_run_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace expertmesh::server::testing

#endif  // EXPERTMESH_TESTS_WORKER_SERVER_FAKE_STEP_ENGINE_H_
