#include "router/generator.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/logging.h"
#include "model/tokenizer/streaming_detokenizer.h"
#include "router/stop_matcher.h"

namespace expertmesh::router {
namespace {

internal_api::SubmitRequest MakeSubmit(const PreparedRequest& r, uint32_t index, int attempt) {
  internal_api::SubmitRequest s;
  s.set_request_id(
      absl::StrCat(r.request_id, "-", index, attempt > 0 ? absl::StrCat("-r", attempt) : ""));
  s.mutable_prompt_token_ids()->Assign(r.prompt.begin(), r.prompt.end());
  const GenerationParams& p = r.params;
  internal_api::Sampling* m = s.mutable_sampling();
  m->set_temperature(p.temperature.value_or(1.0f));
  m->set_top_p(p.top_p.value_or(1.0f));
  m->set_top_k(p.top_k.value_or(0));
  m->set_min_p(p.min_p.value_or(0.0f));
  m->set_repetition_penalty(p.repetition_penalty.value_or(1.0f));
  m->set_presence_penalty(p.presence_penalty.value_or(0.0f));
  m->set_frequency_penalty(p.frequency_penalty.value_or(0.0f));
  if (p.seed.has_value()) {
    m->set_seed(*p.seed + index);
  } else {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    m->set_seed(rng());
  }
  m->set_logprobs(p.logprobs || p.top_logprobs > 0);
  m->set_top_logprobs(static_cast<uint32_t>(p.top_logprobs));
  s.set_max_tokens(r.max_tokens);
  s.mutable_stop_token_ids()->Assign(p.stop_token_ids.begin(), p.stop_token_ids.end());
  s.set_ignore_eos(p.ignore_eos);
  s.set_cache_salt(r.cache_salt);
  s.set_grammar(r.grammar);
  if (p.prompt_logprobs.has_value()) {
    s.set_prompt_logprobs(static_cast<uint32_t>(*p.prompt_logprobs));
  }
  return s;
}

// A worker's error as the client may see it: the worker names requests by their internal id,
// which must not leave the router (clients know only their public id).
absl::Status ForClient(const absl::Status& s, const std::string& internal_id) {
  return absl::Status(s.code(), absl::StrReplaceAll(s.message(), {{internal_id, "the request"}}));
}

// Errors after which another group may succeed.
bool Retryable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsInternal(s) || absl::IsUnknown(s) ||
         absl::IsAborted(s) || absl::IsResourceExhausted(s);
}

// Errors that mean the group itself is broken (not just busy).
bool GroupBroken(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsInternal(s) || absl::IsUnknown(s);
}

}  // namespace

absl::StatusOr<ChoiceResult> Generator::Run(
    const PreparedRequest& request, uint32_t index, CancelToken* cancel,
    const std::function<bool(const ChoiceDelta&)>& on_delta) {
  std::vector<std::shared_ptr<WorkerGroup>> tried;
  absl::Status last_error;
  for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
    if (cancel && cancel->cancelled()) return absl::CancelledError("request cancelled");
    absl::StatusOr<std::shared_ptr<WorkerGroup>> picked =
        pool_->Pick(request.prompt, tried, request.cache_salt);
    if (!picked.ok()) {
      if (tried.empty()) return picked.status();
      break;  // Nothing left to try: report the failure that made us retry.
    }
    std::shared_ptr<WorkerGroup> group = *std::move(picked);
    tried.push_back(group);
    if (attempt > 0) metrics_->CountRetry();

    const internal_api::SubmitRequest submit = MakeSubmit(request, index, attempt);
    tokenizer::StreamingDetokenizer detok(model_->tokenizer(), /*skip_special_tokens=*/true);
    StopMatcher stops(request.params.stop);
    ChoiceResult result;
    result.group = group->address();
    bool consumer_gone = false;
    internal_api::StopReason stop_reason = internal_api::STOP_REASON_UNSPECIFIED;
    absl::Time last_token_time;

    grpc::ClientContext context;
    if (request.deadline != absl::InfiniteFuture()) {
      context.set_deadline(absl::ToChronoTime(request.deadline));
    }
    absl::Status status;
    {
      CancelRegistration on_cancel(cancel, [&context] { context.TryCancel(); });
      group->AddInflight(1);
      status = group->Submit(submit, &context, [&](const internal_api::SubmitResponse& msg) {
        if (result.completion_tokens == 0) result.cached_prompt_tokens = msg.cached_prompt_tokens();
        ChoiceDelta delta;
        for (const internal_api::PromptTokenLogprob& p : msg.prompt_logprobs()) {
          PromptTokenInfo info{{p.token_id(), p.logprob(), {}}, p.rank()};
          for (const internal_api::TopToken& top : p.top()) {
            info.token.top.emplace_back(top.token_id(), top.logprob());
          }
          delta.prompt_logprobs.push_back(std::move(info));
        }
        for (const internal_api::GeneratedToken& t : msg.tokens()) {
          const absl::Time now = absl::Now();
          if (result.completion_tokens == 0) {
            metrics_->ttft().Observe(absl::ToDoubleSeconds(now - request.arrival));
          } else {
            metrics_->inter_token().Observe(absl::ToDoubleSeconds(now - last_token_time));
          }
          last_token_time = now;
          ++result.completion_tokens;
          GeneratedTokenInfo info{t.token_id(), t.logprob(), {}};
          for (const internal_api::TopToken& top : t.top()) {
            info.top.emplace_back(top.token_id(), top.logprob());
          }
          delta.tokens.push_back(std::move(info));
          StopMatcher::Result r = stops.Add(detok.Add(t.token_id()));
          delta.text += r.text;
          if (r.stopped) {
            result.reason = FinishReason::kStopString;
            result.matched_stop = r.matched;
            break;
          }
        }
        if (msg.stop_reason() != internal_api::STOP_REASON_UNSPECIFIED) {
          stop_reason = msg.stop_reason();
        }
        if (!delta.text.empty() || !delta.tokens.empty()) {
          if (!on_delta(delta)) {
            consumer_gone = true;
            return false;
          }
        }
        // A matched stop string ends the stream; cancelling the call aborts it on the worker.
        return !stops.stopped();
      });
      group->AddInflight(-1);
    }
    metrics_->AddCompletionTokens(result.completion_tokens);

    if (stops.stopped()) return result;
    const bool cancelled = consumer_gone || (cancel && cancel->cancelled());
    const bool deadline_passed =
        absl::IsDeadlineExceeded(status) ||
        (request.deadline != absl::InfiniteFuture() && absl::Now() >= request.deadline);
    if (cancelled || (!status.ok() && deadline_passed)) {
      // Cancelling the stream already aborts on the worker; Abort by id also covers a worker
      // that missed the cancellation. Best effort.
      absl::Status aborted = group->Abort(submit.request_id(), options_.abort_timeout);
      if (!aborted.ok())
        EM_LOG_DEBUG("router: abort {}: {}", submit.request_id(), aborted.ToString());
      if (result.completion_tokens == 0) {
        return cancelled ? absl::CancelledError("request cancelled")
                         : absl::DeadlineExceededError("deadline exceeded before the first token");
      }
      result.reason = FinishReason::kAbort;
      result.error = cancelled ? "request cancelled" : "deadline exceeded";
      return result;
    }
    if (status.ok()) {
      ChoiceDelta tail;
      StopMatcher::Result last = stops.Add(detok.Finish());
      tail.text = std::move(last.text);
      if (last.stopped) {
        result.reason = FinishReason::kStopString;
        result.matched_stop = std::move(last.matched);
      } else {
        tail.text += stops.Flush();
      }
      if (!tail.text.empty()) on_delta(tail);
      if (!stops.stopped()) {
        result.reason = stop_reason == internal_api::STOP_REASON_MAX_TOKENS ? FinishReason::kLength
                        : stop_reason == internal_api::STOP_REASON_ABORTED  ? FinishReason::kAbort
                                                                            : FinishReason::kStop;
      }
      return result;
    }
    // The worker failed.
    metrics_->CountWorkerFailure();
    if (GroupBroken(status)) group->MarkFailed(status);
    // Group addresses and internal ids go to the log; the client's text has neither.
    const absl::Status client_status = ForClient(status, submit.request_id());
    if (result.completion_tokens > 0) {
      result.reason = FinishReason::kError;
      result.error = absl::StrCat("the worker group failed after ", result.completion_tokens,
                                  " tokens: ", client_status.message());
      EM_LOG_WARN("router: request {}: worker group {} failed after {} tokens: {}",
                  request.request_id, group->address(), result.completion_tokens,
                  status.ToString());
      return result;
    }
    if (!Retryable(status)) return client_status;
    EM_LOG_WARN("router: request {}: worker group {} failed before the first token ({}); retrying",
                request.request_id, group->address(), status.ToString());
    last_error = absl::Status(status.code(),
                              absl::StrCat("a worker group failed: ", client_status.message()));
  }
  return absl::UnavailableError(absl::StrCat(
      "request failed on ", tried.size(), " worker group(s); last error: ", last_error.message()));
}

}  // namespace expertmesh::router
