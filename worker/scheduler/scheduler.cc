#include "worker/scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "model/plan/kv_block_hash.h"

namespace expertmesh::scheduler {

absl::Status Scheduler::Submit(GenerationRequest request) {
  RETURN_IF_ERROR(Validate(request));
  auto s = std::make_unique<Sequence>();
  s->seq = next_seq_++;
  // Requests without a seed still get their own reproducible stream.
  if (!request.sampling.seed.has_value()) {
    request.sampling.seed = sampling::CounterRandom(config_.seed, static_cast<uint64_t>(s->seq));
  }
  s->tokens = request.prompt;
  if (request.grammar != nullptr) {
    s->matcher = std::make_unique<grammar::GrammarMatcher>(request.grammar);
  }
  s->request = std::move(request);
  waiting_.push_back(s.get());
  by_id_.emplace(s->request.id, std::move(s));
  return absl::OkStatus();
}

void Scheduler::Remove(Sequence* s) {
  kv_->Free(s->seq);
  if (auto it = std::find(running_.begin(), running_.end(), s); it != running_.end()) {
    running_.erase(it);
  }
  if (auto it = std::find(waiting_.begin(), waiting_.end(), s); it != waiting_.end()) {
    waiting_.erase(it);
  }
  by_id_.erase(s->request.id);  // destroys s
}

absl::Status Scheduler::Abort(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return absl::NotFoundError(absl::StrCat("request ", id, " not found"));
  Remove(it->second.get());
  return absl::OkStatus();
}

void Scheduler::Preempt(Sequence* victim, std::vector<Entry>& entries, int64_t& budget,
                        StepPlan& plan) {
  kv_->Free(victim->seq);
  victim->num_computed = 0;
  running_.erase(std::find(running_.begin(), running_.end(), victim));
  for (Entry& e : entries) {
    if (e.seq == victim && !e.removed) {  // scheduled earlier in this step: undo it
      e.removed = true;
      budget += e.num_new;
    }
  }
  // Victims go in most-recent-first, so pushing each to the front keeps arrival order.
  waiting_.push_front(victim);
  plan.preempted.push_back(victim->request.id);
  ++num_preemptions_;
}

bool Scheduler::ScheduleRunning(Sequence* s, int64_t num_new, std::vector<Entry>& entries,
                                int64_t& budget, StepPlan& plan) {
  for (;;) {
    kv::KvAllocationPlan alloc = kv_->PlanAllocation(s->seq, num_new);
    if (alloc.fits) {
      absl::StatusOr<std::vector<kv::KvBlockCopy>> copies = kv_->Commit(alloc);
      // Commit of a fitting plan made just now cannot fail.
      entries.push_back(
          {s, num_new, copies.ok() ? *std::move(copies) : std::vector<kv::KvBlockCopy>{}});
      budget -= num_new;
      return true;
    }
    Sequence* victim = running_.back();
    Preempt(victim, entries, budget, plan);
    if (victim == s) return false;
  }
}

int64_t Scheduler::ChunkLimit(const Sequence& s, int64_t budget) const {
  return s.PromptLogprobsPending() ? std::min(budget, config_.max_prompt_logprob_tokens) : budget;
}

void Scheduler::ScheduleWaiting(std::vector<Entry>& entries, int64_t& budget, StepPlan& plan) {
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* s = waiting_.front();
    // Cached prefix blocks hold KV but no logits: a request still owed prompt logprobs
    // recomputes its whole prompt instead of reusing them (its own blocks still enter the
    // cache for others). Once they are all scored (e.g. re-admitted after a preemption that
    // came after its prompt) it reuses the cache as any request does.
    kv::KvPrefixHit hit =
        s->PromptLogprobsPending()
            ? kv::KvPrefixHit{.root = model::KvRootHash(s->request.cache_salt)}
            : kv_->FindCachedPrefix(s->tokens, model::KvRootHash(s->request.cache_salt));
    const int64_t remaining = static_cast<int64_t>(s->tokens.size()) - hit.num_tokens;
    const int64_t num_new = std::min(remaining, ChunkLimit(*s, budget));
    kv::KvAllocationPlan alloc = kv_->PlanAllocation(s->seq, num_new, hit);
    if (!alloc.fits) break;  // strict FCFS: nobody overtakes the head of the queue
    absl::StatusOr<std::vector<kv::KvBlockCopy>> copies = kv_->Commit(alloc);
    if (!copies.ok()) break;
    waiting_.pop_front();
    running_.push_back(s);
    s->num_computed = hit.num_tokens;
    if (s->cached_prompt_tokens < 0) s->cached_prompt_tokens = hit.num_tokens;
    num_prefix_hit_tokens_ += hit.num_tokens;
    entries.push_back({s, num_new, *std::move(copies)});
    budget -= num_new;
    plan.admitted.push_back(s->request.id);
  }
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  plan.step_id = next_step_++;
  pending_step_ = plan.step_id;
  int64_t budget = config_.max_num_batched_tokens;
  std::vector<Entry> entries;
  auto remaining = [](const Sequence* s) {
    return static_cast<int64_t>(s->tokens.size()) - s->num_computed;
  };
  // Decodes first, then chunks of partial prefills; both in admission order. Iterate over a
  // snapshot: preemption removes sequences from running_.
  for (bool decodes : {true, false}) {
    const std::vector<Sequence*> snapshot = running_;
    for (Sequence* s : snapshot) {
      if (budget == 0) break;
      if (std::find(running_.begin(), running_.end(), s) == running_.end()) continue;
      if ((remaining(s) == 1) != decodes) continue;
      if (std::any_of(entries.begin(), entries.end(),
                      [&](const Entry& e) { return e.seq == s && !e.removed; })) {
        continue;
      }
      ScheduleRunning(s, std::min(remaining(s), ChunkLimit(*s, budget)), entries, budget, plan);
    }
  }
  if (plan.preempted.empty()) ScheduleWaiting(entries, budget, plan);

  for (Entry& e : entries) {
    if (e.removed) continue;
    const Sequence& s = *e.seq;
    ScheduledSequence out;
    out.request_id = s.request.id;
    out.seq = s.seq;
    out.token_ids.assign(s.tokens.begin() + s.num_computed,
                         s.tokens.begin() + s.num_computed + e.num_new);
    for (int64_t p = s.num_computed; p < s.num_computed + e.num_new; ++p) {
      out.positions.push_back(static_cast<int32_t>(p));
    }
    out.block_table = kv_->block_table(s.seq);
    out.context_len = s.num_computed + e.num_new;
    out.sample = out.context_len == static_cast<int64_t>(s.tokens.size());
    // A decode computes exactly the last generated token.
    out.is_prefill_chunk = !(e.num_new == 1 && out.sample && s.NumOutput() > 0 &&
                             s.num_computed >= static_cast<int64_t>(s.request.prompt.size()));
    out.sampling = &s.request.sampling;
    out.history = {s.request.prompt,
                   std::span<const int32_t>(s.tokens).subspan(s.request.prompt.size())};
    if (out.sample && s.matcher != nullptr) {
      out.matcher = s.matcher.get();
      out.stop_token_ids = s.request.stop_token_ids;
      out.tokens_left = std::min(s.request.max_tokens - s.NumOutput(),
                                 config_.max_model_len - static_cast<int64_t>(s.tokens.size()));
    }
    if (s.PromptLogprobsPending()) {
      // Positions are scored in order: nothing before num_prompt_scored is in this chunk
      // unless it is a recompute, which skips what was already scored.
      out.prompt_logprobs_begin = std::max(s.num_computed, s.num_prompt_scored);
      out.prompt_logprobs_end =
          std::min<int64_t>(out.context_len, static_cast<int64_t>(s.request.prompt.size()) - 1);
      out.prompt_logprobs_end = std::max(out.prompt_logprobs_end, out.prompt_logprobs_begin);
      out.prompt_top_logprobs = *s.request.prompt_logprobs;
    }
    plan.block_copies.insert(plan.block_copies.end(), e.copies.begin(), e.copies.end());
    plan.num_tokens += e.num_new;
    plan.sequences.push_back(std::move(out));
  }
  return plan;
}

FinishReason Scheduler::CheckStop(const Sequence& s, int32_t token) const {
  const GenerationRequest& r = s.request;
  auto contains = [](const std::vector<int32_t>& ids, int32_t t) {
    return std::find(ids.begin(), ids.end(), t) != ids.end();
  };
  if (!r.ignore_eos && contains(config_.eos_token_ids, token)) return FinishReason::kStop;
  if (contains(r.stop_token_ids, token)) return FinishReason::kStop;
  if (s.NumOutput() >= r.max_tokens) return FinishReason::kLength;
  if (static_cast<int64_t>(s.tokens.size()) >= config_.max_model_len) return FinishReason::kLength;
  return FinishReason::kNone;
}

bool Scheduler::AdvanceGrammar(Sequence& s, int32_t token) const {
  // A stop token id that is no eos of the grammar's vocabulary ends the request without being
  // text: the engine allowed it only where the grammar may end.
  const bool stop_id = std::find(s.request.stop_token_ids.begin(), s.request.stop_token_ids.end(),
                                 token) != s.request.stop_token_ids.end();
  if (stop_id && !s.matcher->compiled().vocab().is_eos(token)) return true;
  absl::Status accepted = s.matcher->AcceptToken(token);
  if (accepted.ok()) return true;
  // The engine draws from the grammar's own mask, so this is a bug, not a bad request: cut this
  // one request and keep serving the others.
  EM_LOG_ERROR(
      "scheduler: request {}: the grammar refused token {} the engine drew ({}); "
      "ending the request",
      s.request.id, token, accepted.ToString());
  return false;
}

absl::StatusOr<std::vector<RequestUpdate>> Scheduler::ProcessStepOutputs(
    const StepPlan& plan, std::span<const sampling::SampledToken> sampled,
    std::span<const std::vector<sampling::PromptLogprob>> prompt_logprobs) {
  if (plan.step_id == 0 || plan.step_id != pending_step_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "scheduler: step ", plan.step_id, " is not the pending step (", pending_step_, ")"));
  }
  if (static_cast<int>(sampled.size()) != plan.NumToSample()) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler: step ", plan.step_id, " expects ",
                                                   plan.NumToSample(), " sampled tokens, got ",
                                                   sampled.size()));
  }
  for (const sampling::SampledToken& t : sampled) {
    if (t.token < 0 || t.token >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("scheduler: sampled token id ", t.token,
                                                     " outside vocab ", config_.vocab_size));
    }
  }
  if (static_cast<int>(prompt_logprobs.size()) != plan.NumWithPromptLogprobs()) {
    return absl::InvalidArgumentError(
        absl::StrCat("scheduler: step ", plan.step_id, " expects prompt logprobs for ",
                     plan.NumWithPromptLogprobs(), " sequences, got ", prompt_logprobs.size()));
  }
  for (size_t i = 0, next = 0; i < plan.sequences.size(); ++i) {
    const ScheduledSequence& step = plan.sequences[i];
    if (step.NumPromptLogprobs() <= 0) continue;
    if (static_cast<int64_t>(prompt_logprobs[next++].size()) != step.NumPromptLogprobs()) {
      return absl::InvalidArgumentError(
          absl::StrCat("scheduler: step ", plan.step_id, " expects ", step.NumPromptLogprobs(),
                       " prompt logprobs for request ", step.request_id));
    }
  }
  pending_step_ = 0;
  std::vector<RequestUpdate> updates;
  size_t next_sample = 0, next_prompt = 0;
  for (const ScheduledSequence& step : plan.sequences) {
    const sampling::SampledToken* token = step.sample ? &sampled[next_sample++] : nullptr;
    const std::vector<sampling::PromptLogprob>* scored =
        step.NumPromptLogprobs() > 0 ? &prompt_logprobs[next_prompt++] : nullptr;
    auto it = by_id_.find(step.request_id);
    // Aborted since Schedule() (or replaced by a new request under the same id).
    if (it == by_id_.end() || it->second->seq != step.seq) continue;
    Sequence* s = it->second.get();
    s->num_computed = step.context_len;
    kv_->MarkComputed(s->seq, s->tokens, s->num_computed);
    if (scored != nullptr) {
      s->prompt_logprobs.insert(s->prompt_logprobs.end(), scored->begin(), scored->end());
      s->num_prompt_scored = step.prompt_logprobs_end;
    }
    if (token == nullptr) continue;
    s->tokens.push_back(token->token);
    RequestUpdate update{.id = s->request.id,
                         .token = *token,
                         .finish = CheckStop(*s, token->token),
                         .num_output_tokens = s->NumOutput()};
    if (s->matcher != nullptr && !AdvanceGrammar(*s, token->token)) {
      update.finish = FinishReason::kLength;
    }
    if (update.num_output_tokens == 1) {
      update.cached_prompt_tokens = s->cached_prompt_tokens;
      update.prompt_logprobs = std::move(s->prompt_logprobs);
      s->prompt_logprobs = {};
    }
    if (update.finish != FinishReason::kNone) Remove(s);
    updates.push_back(std::move(update));
  }
  return updates;
}

SchedulerStats Scheduler::Stats() const {
  return {.num_waiting = static_cast<int32_t>(waiting_.size()),
          .num_running = static_cast<int32_t>(running_.size()),
          .num_preemptions = num_preemptions_,
          .num_prefix_hit_tokens = num_prefix_hit_tokens_,
          .kv = kv_->Stats()};
}

std::vector<std::string> Scheduler::WaitingIds() const {
  std::vector<std::string> ids;
  for (const Sequence* s : waiting_) ids.push_back(s->request.id);
  return ids;
}

std::vector<std::string> Scheduler::RunningIds() const {
  std::vector<std::string> ids;
  for (const Sequence* s : running_) ids.push_back(s->request.id);
  return ids;
}

}  // namespace expertmesh::scheduler
