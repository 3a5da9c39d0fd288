#include "tests/worker/serving/fake_step_engine.h"

#include <utility>

#include "absl/time/time.h"

namespace expertmesh::server::testing {

std::unique_ptr<FakeStepEngine> FakeStepEngine::Create(const FakeEngineConfig& config) {
  absl::StatusOr<kv::KvCacheManager> kv = kv::KvCacheManager::Create(
      {.num_blocks = config.num_blocks, .block_size = config.block_size});
  if (!kv.ok()) return nullptr;
  std::unique_ptr<FakeStepEngine> engine(new FakeStepEngine(config, *std::move(kv)));
  absl::StatusOr<std::unique_ptr<scheduler::Scheduler>> scheduler =
      scheduler::Scheduler::Create({.max_num_batched_tokens = config.max_batched_tokens,
                                    .max_num_seqs = config.max_running,
                                    .max_model_len = config.max_model_len,
                                    .vocab_size = config.vocab_size,
                                    .eos_token_ids = config.eos,
                                    .seed = 1},
                                   &engine->kv_);
  if (!scheduler.ok()) return nullptr;
  engine->scheduler_ = *std::move(scheduler);
  return engine;
}

void FakeStepEngine::SetStepBudget(std::optional<int64_t> steps) {
  absl::MutexLock lock(&mu_);
  budget_ = steps;
}

void FakeStepEngine::AllowSteps(int64_t steps) {
  absl::MutexLock lock(&mu_);
  if (budget_.has_value()) *budget_ += steps;
}

void FakeStepEngine::FailNextStep(absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_next_ = std::move(status);
}

int64_t FakeStepEngine::StepsRun() const {
  absl::MutexLock lock(&mu_);
  return steps_run_;
}

EngineInfo FakeStepEngine::Info() const {
  return {.model = "fake",
          .max_context_length = config_.max_model_len,
          .vocab_size = config_.vocab_size};
}

absl::Status FakeStepEngine::AddRequest(scheduler::GenerationRequest request) {
  absl::Status status = scheduler_->Submit(std::move(request));
  if (status.ok()) ++requests_added_;
  return status;
}

absl::Status FakeStepEngine::Abort(const std::string& id) {
  reported_cached_.erase(id);
  first_position_.erase(id);
  return scheduler_->Abort(id);
}

bool FakeStepEngine::TakePermit() {
  absl::MutexLock lock(&mu_);
  auto has_permit = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !budget_.has_value() || *budget_ > 0;
  };
  // A bounded wait, so the loop keeps serving its queue while the test withholds steps.
  if (!mu_.AwaitWithTimeout(absl::Condition(&has_permit), absl::Milliseconds(2))) return false;
  if (budget_.has_value()) --*budget_;
  ++steps_run_;
  return true;
}

absl::StatusOr<std::vector<StepOutput>> FakeStepEngine::Step() {
  if (!TakePermit()) return std::vector<StepOutput>();
  {
    absl::MutexLock lock(&mu_);
    if (!fail_next_.ok()) return std::exchange(fail_next_, absl::OkStatus());
  }
  scheduler::StepPlan plan = scheduler_->Schedule();
  std::vector<sampling::SampledToken> sampled;
  std::vector<std::vector<sampling::PromptLogprob>> scored;
  std::vector<StepOutput> outputs;
  for (const scheduler::ScheduledSequence& seq : plan.sequences) {
    if (seq.NumPromptLogprobs() > 0) {
      std::vector<sampling::PromptLogprob>& out = scored.emplace_back();
      for (int64_t p = seq.prompt_logprobs_begin; p < seq.prompt_logprobs_end; ++p) {
        out.push_back(FakePromptLogprob(seq.history.prompt[p], seq.history.prompt[p + 1],
                                        seq.prompt_top_logprobs, config_.vocab_size));
      }
    }
    // A newly admitted request's first chunk starts right after its prefix-cache hit.
    if (!reported_cached_.contains(seq.request_id)) {
      first_position_.try_emplace(seq.request_id, seq.positions.front());
    }
    if (!seq.sample) continue;
    const int32_t last =
        seq.history.output.empty() ? seq.history.prompt.back() : seq.history.output.back();
    sampled.push_back({.token = FakeNextToken(last, config_.vocab_size)});
    StepOutput out{.id = seq.request_id};
    if (reported_cached_.insert(seq.request_id).second) {
      out.cached_prompt_tokens = first_position_[seq.request_id];
      first_position_.erase(seq.request_id);
    }
    outputs.push_back(std::move(out));
  }
  absl::StatusOr<std::vector<scheduler::RequestUpdate>> updates =
      scheduler_->ProcessStepOutputs(plan, sampled, scored);
  if (!updates.ok()) return updates.status();
  // Updates come in plan order of the sampled sequences that are still live.
  std::vector<StepOutput> result;
  for (scheduler::RequestUpdate& update : *updates) {
    for (StepOutput& out : outputs) {
      if (out.id != update.id) continue;
      out.tokens.push_back(update.token);
      out.prompt_logprobs = std::move(update.prompt_logprobs);
      out.finish = update.finish;
      if (update.finish != scheduler::FinishReason::kNone) reported_cached_.erase(out.id);
      result.push_back(std::move(out));
      break;
    }
  }
  return result;
}

EngineLoad FakeStepEngine::Load() const {
  scheduler::SchedulerStats stats = scheduler_->Stats();
  return {.waiting = stats.num_waiting,
          .running = stats.num_running,
          .free_kv_blocks = stats.kv.free_blocks,
          .total_kv_blocks = stats.kv.total_blocks,
          .kv_block_size = stats.kv.block_size,
          .cached_prefix_hashes = kv_.CachedPrefixHashes(64)};
}

}  // namespace expertmesh::server::testing
