// StepEngine: what the leader's serving loop needs from an inference engine. The real
// adapter (engine_adapter.h) wraps engine::Engine; tests use a scripted double.
//
// The loop calls every method from its one engine thread; implementations need no locking.
#ifndef EXPERTMESH_WORKER_SERVING_STEP_ENGINE_H_
#define EXPERTMESH_WORKER_SERVING_STEP_ENGINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/sampling/sampler.h"
#include "worker/scheduler/request.h"

namespace expertmesh::server {

// One request's result of a step.
struct StepOutput {
  std::string id;
  std::vector<sampling::SampledToken> tokens;  // usually one
  scheduler::FinishReason finish = scheduler::FinishReason::kNone;
  // Set on the step that admitted the request (its first tokens): prompt tokens whose KV came
  // from the prefix cache.
  std::optional<int64_t> cached_prompt_tokens;
  // With the first tokens of a request that asked for prompt logprobs: prompt tokens 1..n-1.
  std::vector<sampling::PromptLogprob> prompt_logprobs;
};

// Capacity and load, as LoadReport carries them.
struct EngineLoad {
  int32_t waiting = 0;
  int32_t running = 0;
  int32_t free_kv_blocks = 0;
  int32_t total_kv_blocks = 0;
  int32_t kv_block_size = 0;
  std::vector<uint64_t> cached_prefix_hashes;  // most recent first, bounded by the engine
};

// Static facts about the served model.
struct EngineInfo {
  std::string model;  // name reported to routers
  int64_t max_context_length = 0;
  int64_t vocab_size = 0;
};

class StepEngine {
 public:
  virtual ~StepEngine() = default;

  virtual EngineInfo Info() const = 0;

  // Queues a request. INVALID_ARGUMENT naming the problem for a request the engine can never
  // run (empty prompt, too long, bad ids or sampling values); ALREADY_EXISTS for a live id.
  // A rejected request changes nothing.
  virtual absl::Status AddRequest(scheduler::GenerationRequest request) = 0;

  // Drops a live request and frees its KV blocks at once. NOT_FOUND when it is not live.
  virtual absl::Status Abort(const std::string& id) = 0;

  virtual bool HasWork() const = 0;

  // Runs one step (may produce no output, e.g. a step of prefill chunks only). Outputs of
  // finished requests carry their finish reason; the engine has forgotten them afterwards.
  // An error means the engine can no longer be trusted with the live requests: the caller
  // aborts them all.
  virtual absl::StatusOr<std::vector<StepOutput>> Step() = 0;

  virtual EngineLoad Load() const = 0;

  // Called by the loop when it has had no work for EngineLoopOptions::idle_tick: the leader of
  // a worker group keeps the other ranks' collectives alive. An error is fatal, as for Step().
  virtual absl::Status Idle() { return absl::OkStatus(); }
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVING_STEP_ENGINE_H_
