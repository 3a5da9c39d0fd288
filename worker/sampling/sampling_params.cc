#include "worker/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace expertmesh::sampling {
namespace {

absl::Status Bad(const char* field, const char* rule, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("sampling: ", field, " must be ", rule, ", got ", value));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return Bad("temperature", "finite and >= 0", p.temperature);
  }
  if (p.top_k < -1) return Bad("top_k", ">= 1, or 0 / -1 for off", p.top_k);
  if (!(p.top_p > 0 && p.top_p <= 1)) return Bad("top_p", "in (0, 1]", p.top_p);
  if (!(p.min_p >= 0 && p.min_p <= 1)) return Bad("min_p", "in [0, 1]", p.min_p);
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0) {
    return Bad("repetition_penalty", "finite and > 0", p.repetition_penalty);
  }
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) {
    return Bad("presence_penalty", "in [-2, 2]", p.presence_penalty);
  }
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2)) {
    return Bad("frequency_penalty", "in [-2, 2]", p.frequency_penalty);
  }
  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    return Bad("top_logprobs", absl::StrCat("in [0, ", kMaxTopLogprobs, "]").c_str(),
               p.top_logprobs);
  }
  if (p.top_logprobs > 0 && !p.logprobs) {
    return absl::InvalidArgumentError("sampling: top_logprobs requires logprobs to be enabled");
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::sampling
