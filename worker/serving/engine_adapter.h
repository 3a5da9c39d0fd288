// EngineAdapter: the real engine::Engine behind the StepEngine seam of the serving loop. The
// prompt tokens each request took from the prefix cache (SubmitResponse.cached_prompt_tokens)
// come from the scheduler with the request's first token (scheduler::RequestUpdate).
//
// Thread safety: none; the engine loop's thread calls it.
#ifndef EXPERTMESH_WORKER_SERVING_ENGINE_ADAPTER_H_
#define EXPERTMESH_WORKER_SERVING_ENGINE_ADAPTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "worker/engine/engine.h"
#include "worker/serving/step_engine.h"

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
  std::unique_ptr<engine::Engine> engine_;
  std::function<absl::Status()> idle_hook_;
  const std::string model_name_;
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVING_ENGINE_ADAPTER_H_
