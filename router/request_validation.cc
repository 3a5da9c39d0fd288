#include "router/request_validation.h"

#include <algorithm>
#include <limits>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "model/request/sampling_rules.h"

namespace expertmesh::router {

absl::Status InvalidParam(absl::string_view param, absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

std::string ParamOf(const absl::Status& status) {
  absl::optional<absl::Cord> param = status.GetPayload(kParamPayload);
  return param.has_value() ? std::string(*param) : std::string();
}

absl::Status ValidateParams(const GenerationParams& p, const RouterLimits& limits) {
  // The sampling ranges are the worker's too (model/request/sampling_rules.h).
  const std::optional<model::SamplingRuleViolation> bad =
      model::CheckSamplingValues({.temperature = p.temperature,
                                  .top_k = p.top_k,
                                  .top_p = p.top_p,
                                  .min_p = p.min_p,
                                  .repetition_penalty = p.repetition_penalty,
                                  .presence_penalty = p.presence_penalty,
                                  .frequency_penalty = p.frequency_penalty,
                                  .top_logprobs = p.top_logprobs,
                                  .logprobs = p.logprobs || p.top_logprobs > 0});
  if (bad.has_value()) return InvalidParam(bad->parameter, bad->message);
  // The same bound as top_logprobs: each prompt position returns prompt_logprobs + 1 numbers.
  if (p.prompt_logprobs.has_value() &&
      (*p.prompt_logprobs < 0 || *p.prompt_logprobs > model::kMaxTopLogprobs)) {
    return InvalidParam("prompt_logprobs",
                        absl::StrCat("prompt_logprobs must be in [0, ", model::kMaxTopLogprobs,
                                     "], got ", *p.prompt_logprobs));
  }
  if (p.max_tokens.has_value() && *p.max_tokens < 1) {
    return InvalidParam("max_tokens",
                        absl::StrCat("max_tokens must be at least 1, got ", *p.max_tokens));
  }
  if (p.n < 1 || p.n > limits.max_n) {
    return InvalidParam("n", absl::StrCat("n must be in [1, ", limits.max_n, "], got ", p.n));
  }
  if (static_cast<int64_t>(p.stop.size()) > limits.max_stop_strings) {
    return InvalidParam("stop", absl::StrCat("at most ", limits.max_stop_strings,
                                             " stop strings are allowed, got ", p.stop.size()));
  }
  for (const std::string& s : p.stop) {
    if (s.empty()) return InvalidParam("stop", "stop strings must not be empty");
    if (s.size() > limits.max_stop_string_bytes) {
      return InvalidParam("stop",
                          absl::StrCat("a stop string is ", s.size(), " bytes; the limit is ",
                                       limits.max_stop_string_bytes));
    }
  }
  if (static_cast<int64_t>(p.stop_token_ids.size()) > limits.max_stop_token_ids) {
    return InvalidParam("stop_token_ids",
                        absl::StrCat("at most ", limits.max_stop_token_ids, " stop token ids"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> ResolveMaxTokens(int64_t prompt_tokens,
                                          const std::optional<int64_t>& requested,
                                          int64_t context_length, const RouterLimits& limits,
                                          std::optional<int64_t> default_max_tokens) {
  if (prompt_tokens <= 0) return InvalidParam("prompt", "the prompt is empty");
  if (limits.max_prompt_tokens > 0 && prompt_tokens > limits.max_prompt_tokens) {
    return InvalidParam(
        "prompt", absl::StrCat("the prompt has ", prompt_tokens,
                               " tokens; this server accepts at most ", limits.max_prompt_tokens));
  }
  if (prompt_tokens >= context_length) {
    return InvalidParam("prompt", absl::StrCat("the prompt has ", prompt_tokens,
                                               " tokens; the model's context length is ",
                                               context_length, " tokens"));
  }
  const int64_t room = context_length - prompt_tokens;
  int64_t max_tokens = requested.value_or(std::min(room, default_max_tokens.value_or(room)));
  // Compared with the room left, never with prompt + max_tokens: that sum overflows for a
  // max_tokens near 2^63.
  if (requested.has_value() && *requested > room) {
    return InvalidParam("max_tokens", absl::StrCat("the model's context length is ", context_length,
                                                   " tokens; the prompt has ", prompt_tokens,
                                                   " and max_tokens asks for ", *requested,
                                                   " more. Reduce the prompt or max_tokens"));
  }
  if (limits.max_tokens_cap > 0 && max_tokens > limits.max_tokens_cap) {
    if (requested.has_value()) {
      return InvalidParam(
          "max_tokens", absl::StrCat("max_tokens is ", *requested, "; this server allows at most ",
                                     limits.max_tokens_cap));
    }
    max_tokens = limits.max_tokens_cap;
  }
  if (max_tokens > std::numeric_limits<uint32_t>::max()) {
    return InvalidParam("max_tokens", absl::StrCat("max_tokens is ", max_tokens,
                                                   "; the largest supported is 4294967295"));
  }
  return static_cast<uint32_t>(max_tokens);
}

}  // namespace expertmesh::router
