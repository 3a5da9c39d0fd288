// EngineAdapter: the real engine::Engine behind the StepEngine seam of the serving loop.
//
// The Engine reports tokens but not how many prompt tokens each request took from the prefix
// cache, which SubmitResponse.cached_prompt_tokens carries. The adapter recovers it without
// touching the engine: the scheduler admits waiting requests in FCFS order, each starting
// after its longest cached prefix (full blocks, leaving one token to compute). Before a step
// the adapter computes that prefix for the requests not yet admitted from the cached block
// hashes; after the step it attributes it to the first k of them, k being the drop in the
// waiting count. The sum is checked against the scheduler's prefix-hit counter; when they
// disagree (a preemption in the same step) the value is left unreported (0).
//
// Thread safety: none; the engine loop's thread calls it.
#ifndef EXPERTMESH_WORKER_SERVER_ENGINE_ADAPTER_H_
#define EXPERTMESH_WORKER_SERVER_ENGINE_ADAPTER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "worker/engine/engine.h"
#include "worker/server/step_engine.h"

namespace expertmesh::server {

class EngineAdapter final : public StepEngine {
 public:
  // `model_name` is what LoadReport.model says.
  EngineAdapter(std::unique_ptr<engine::Engine> engine, std::string model_name);

  EngineInfo Info() const override;
  absl::Status AddRequest(scheduler::GenerationRequest request) override;
  absl::Status Abort(const std::string& id) override;
  bool HasWork() const override { return engine_->HasWork(); }
  absl::StatusOr<std::vector<StepOutput>> Step() override;
  EngineLoad Load() const override;
  absl::Status Idle() override { return idle_hook_ ? idle_hook_() : absl::OkStatus(); }

  engine::Engine& engine() { return *engine_; }
  // What Idle() runs: the group leader's heartbeat to the other ranks.
  void SetIdleHook(std::function<absl::Status()> hook) { idle_hook_ = std::move(hook); }

 private:
  // Prompt tokens of `prompt` the prefix cache would serve now.
  int64_t CachedPrefixTokens(const std::vector<int32_t>& prompt) const;

  std::unique_ptr<engine::Engine> engine_;
  std::function<absl::Status()> idle_hook_;
  const std::string model_name_;
  const int32_t block_size_;
  // Requests not yet admitted, FCFS, with their prompts (for the prefix computation).
  std::deque<std::pair<std::string, std::vector<int32_t>>> not_admitted_;
  // Admitted requests whose first output has not gone out: their cached prompt tokens.
  absl::flat_hash_map<std::string, int64_t> cached_;
  absl::flat_hash_map<std::string, bool> started_;  // live ids that produced output
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVER_ENGINE_ADAPTER_H_
