#include "worker/server/engine_adapter.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "common/logging.h"
#include "worker/kv/kv_block_hash.h"

namespace expertmesh::server {

EngineAdapter::EngineAdapter(std::unique_ptr<engine::Engine> engine, std::string model_name)
    : engine_(std::move(engine)),
      model_name_(std::move(model_name)),
      block_size_(engine_->Stats().scheduler.kv.block_size) {}

EngineInfo EngineAdapter::Info() const {
  return {.model = model_name_,
          .max_context_length = engine_->max_model_len(),
          .vocab_size = engine_->config().vocab_size};
}

absl::Status EngineAdapter::AddRequest(scheduler::GenerationRequest request) {
  std::string id = request.id;
  std::vector<int32_t> prompt = request.prompt;
  absl::Status status = engine_->AddRequest(std::move(request));
  if (status.ok()) not_admitted_.emplace_back(std::move(id), std::move(prompt));
  return status;
}

absl::Status EngineAdapter::Abort(const std::string& id) {
  auto it = std::find_if(not_admitted_.begin(), not_admitted_.end(),
                         [&](const auto& entry) { return entry.first == id; });
  if (it != not_admitted_.end()) not_admitted_.erase(it);
  cached_.erase(id);
  started_.erase(id);
  return engine_->Abort(id);
}

int64_t EngineAdapter::CachedPrefixTokens(const std::vector<int32_t>& prompt) const {
  if (block_size_ <= 0 || prompt.size() <= 1) return 0;
  const size_t max_blocks = (prompt.size() - 1) / block_size_;
  if (max_blocks == 0) return 0;
  const std::vector<uint64_t> hashes = kv::HashFullKvBlocks(prompt, block_size_, max_blocks);
  const std::vector<uint64_t> cached_list =
      engine_->CachedPrefixHashes(static_cast<size_t>(engine_->num_kv_blocks()));
  const absl::flat_hash_set<uint64_t> cached(cached_list.begin(), cached_list.end());
  int64_t blocks = 0;
  for (uint64_t hash : hashes) {
    if (!cached.contains(hash)) break;
    ++blocks;
  }
  return blocks * block_size_;
}

absl::StatusOr<std::vector<StepOutput>> EngineAdapter::Step() {
  const scheduler::SchedulerStats before = engine_->Stats().scheduler;
  std::vector<int64_t> prefix;  // for each not-yet-admitted request, in FCFS order
  prefix.reserve(not_admitted_.size());
  for (const auto& [id, prompt] : not_admitted_) prefix.push_back(CachedPrefixTokens(prompt));

  absl::StatusOr<std::vector<engine::RequestOutput>> outputs = engine_->Step();
  if (!outputs.ok()) return outputs.status();

  const scheduler::SchedulerStats after = engine_->Stats().scheduler;
  const int64_t admitted = std::clamp<int64_t>(before.num_waiting - after.num_waiting, 0,
                                               static_cast<int64_t>(not_admitted_.size()));
  int64_t sum = 0;
  for (int64_t i = 0; i < admitted; ++i) sum += prefix[i];
  const bool exact = after.num_preemptions == before.num_preemptions &&
                     sum == after.num_prefix_hit_tokens - before.num_prefix_hit_tokens;
  if (!exact && admitted > 0) {
    EM_LOG_DEBUG("cached prompt tokens of {} admitted requests not attributable", admitted);
  }
  for (int64_t i = 0; i < admitted; ++i) {
    if (exact) cached_[not_admitted_.front().first] = prefix[i];
    not_admitted_.pop_front();
  }

  std::vector<StepOutput> result;
  result.reserve(outputs->size());
  for (engine::RequestOutput& output : *outputs) {
    StepOutput out{.id = output.id, .finish = output.finish};
    out.tokens.push_back(std::move(output.token));
    if (!started_.contains(output.id)) {
      started_[output.id] = true;
      auto it = cached_.find(output.id);
      if (it != cached_.end()) {
        out.cached_prompt_tokens = it->second;
        cached_.erase(it);
      }
    }
    if (output.finish != scheduler::FinishReason::kNone) {
      started_.erase(output.id);
      cached_.erase(output.id);
    }
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
