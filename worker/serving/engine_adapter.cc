#include "worker/serving/engine_adapter.h"

#include <utility>

namespace expertmesh::server {

EngineAdapter::EngineAdapter(std::unique_ptr<engine::Engine> engine, std::string model_name)
    : engine_(std::move(engine)), model_name_(std::move(model_name)) {}

EngineInfo EngineAdapter::Info() const {
  return {.model = model_name_,
          .max_context_length = engine_->max_model_len(),
          .vocab_size = engine_->config().vocab_size};
}

absl::Status EngineAdapter::AddRequest(scheduler::GenerationRequest request) {
  return engine_->AddRequest(std::move(request));
}

absl::Status EngineAdapter::Abort(const std::string& id) { return engine_->Abort(id); }

absl::StatusOr<std::vector<StepOutput>> EngineAdapter::Step() {
  absl::StatusOr<std::vector<engine::RequestOutput>> outputs = engine_->Step();
  if (!outputs.ok()) return outputs.status();
  std::vector<StepOutput> result;
  result.reserve(outputs->size());
  for (engine::RequestOutput& output : *outputs) {
    StepOutput out{.id = output.id,
                   .finish = output.finish,
                   .cached_prompt_tokens = output.cached_prompt_tokens,
                   .prompt_logprobs = std::move(output.prompt_logprobs)};
    out.tokens.push_back(std::move(output.token));
    result.push_back(std::move(out));
  }
  return result;
}

EngineLoad EngineAdapter::Load() const {
  const engine::EngineStats stats = engine_->Stats();
  return {.waiting = stats.scheduler.num_waiting,
          .running = stats.scheduler.num_running,
          .free_kv_blocks = stats.scheduler.kv.free_blocks,
          .total_kv_blocks = stats.scheduler.kv.total_blocks,
          .kv_block_size = stats.scheduler.kv.block_size,
          .cached_prefix_hashes = engine_->CachedPrefixHashes(256)};
}

}  // namespace expertmesh::server
