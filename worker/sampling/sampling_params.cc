#include "worker/sampling/sampling_params.h"

#include "absl/strings/str_cat.h"
#include "model/request/sampling_rules.h"

namespace expertmesh::sampling {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  const std::optional<model::SamplingRuleViolation> bad =
      model::CheckSamplingValues({.temperature = p.temperature,
                                  .top_k = p.top_k,
                                  .top_p = p.top_p,
                                  .min_p = p.min_p,
                                  .repetition_penalty = p.repetition_penalty,
                                  .presence_penalty = p.presence_penalty,
                                  .frequency_penalty = p.frequency_penalty,
                                  .top_logprobs = p.top_logprobs,
                                  .logprobs = p.logprobs});
  if (bad.has_value()) return absl::InvalidArgumentError(absl::StrCat("sampling: ", bad->message));
  return absl::OkStatus();
}

}  // namespace expertmesh::sampling
