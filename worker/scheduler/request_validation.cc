// Scheduler construction and request validation: every request-dependent condition becomes
// an INVALID_ARGUMENT (or ALREADY_EXISTS) before the request touches any shared state.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/scheduler/scheduler.h"

namespace expertmesh::scheduler {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
  }
  return "unknown";
}

int StepPlan::NumToSample() const {
  return static_cast<int>(std::count_if(sequences.begin(), sequences.end(),
                                        [](const ScheduledSequence& s) { return s.sample; }));
}

int StepPlan::NumWithPromptLogprobs() const {
  return static_cast<int>(
      std::count_if(sequences.begin(), sequences.end(),
                    [](const ScheduledSequence& s) { return s.NumPromptLogprobs() > 0; }));
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerConfig& config,
                                                             kv::KvCacheManager* kv) {
  if (kv == nullptr) return absl::InvalidArgumentError("scheduler: no KV cache manager");
  if (config.max_num_batched_tokens < 1 || config.max_num_seqs < 1 || config.max_model_len < 1 ||
      config.vocab_size < 1 || config.max_prompt_logprob_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scheduler: max_num_batched_tokens (", config.max_num_batched_tokens, "), max_num_seqs (",
        config.max_num_seqs, "), max_model_len (", config.max_model_len, "), vocab_size (",
        config.vocab_size, ") and max_prompt_logprob_tokens (", config.max_prompt_logprob_tokens,
        ") must all be >= 1"));
  }
  for (int32_t eos : config.eos_token_ids) {
    if (eos < 0 || eos >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("scheduler: eos token id ", eos, " outside vocab ", config.vocab_size));
    }
  }
  return std::unique_ptr<Scheduler>(new Scheduler(config, kv));
}

absl::Status Scheduler::Validate(const GenerationRequest& r) const {
  if (r.id.empty()) return absl::InvalidArgumentError("request: empty request id");
  if (by_id_.contains(r.id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", r.id, ": id already in use"));
  }
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("request ", r.id, ": ", parts...));
  };
  if (r.cache_salt.size() > kMaxCacheSaltBytes) {
    return bad("cache salt is ", r.cache_salt.size(), " bytes (at most ", kMaxCacheSaltBytes, ")");
  }
  const int64_t prompt_len = static_cast<int64_t>(r.prompt.size());
  if (prompt_len == 0) return bad("empty prompt");
  if (prompt_len >= config_.max_model_len) {
    return bad("prompt of ", prompt_len, " tokens leaves no room in the context of ",
               config_.max_model_len, " tokens");
  }
  if (r.max_tokens < 1) return bad("max_tokens must be >= 1, got ", r.max_tokens);
  if (r.max_tokens > config_.max_model_len - prompt_len) {
    return bad("max_tokens ", r.max_tokens, " with a prompt of ", prompt_len,
               " tokens exceeds the context length ", config_.max_model_len, " (at most ",
               config_.max_model_len - prompt_len, ")");
  }
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= config_.vocab_size) {
      return bad("prompt token ", i, " is id ", r.prompt[i], ", outside the vocabulary of ",
                 config_.vocab_size);
    }
  }
  for (int32_t t : r.stop_token_ids) {
    if (t < 0 || t >= config_.vocab_size) {
      return bad("stop token id ", t, " outside the vocabulary of ", config_.vocab_size);
    }
  }
  if (absl::Status s = sampling::ValidateSamplingParams(r.sampling); !s.ok()) {
    return bad(s.message());
  }
  // The bound of top_logprobs: each scored position keeps prompt_logprobs + 1 numbers.
  if (r.prompt_logprobs.has_value() &&
      (*r.prompt_logprobs < 0 || *r.prompt_logprobs > sampling::kMaxTopLogprobs)) {
    return bad("prompt_logprobs must be in [0, ", sampling::kMaxTopLogprobs, "], got ",
               *r.prompt_logprobs);
  }
  if (r.grammar != nullptr) {
    if (r.ignore_eos) {
      return bad(
          "ignore_eos cannot be combined with a grammar: the grammar decides where the "
          "output ends");
    }
    if (r.grammar->vocab().size() != config_.vocab_size) {
      return bad("grammar compiled for a vocabulary of ", r.grammar->vocab().size(),
                 " tokens, the model has ", config_.vocab_size);
    }
  }
  // Preemption can always make room for one request, but never more than the whole pool.
  const int32_t blocks = kv_->BlocksForTokens(prompt_len + r.max_tokens);
  if (blocks > kv_->num_blocks()) {
    return bad("prompt + max_tokens = ", prompt_len + r.max_tokens, " tokens need ", blocks,
               " KV blocks; the pool has ", kv_->num_blocks());
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::scheduler
