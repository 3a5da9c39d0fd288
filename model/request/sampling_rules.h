// The allowed values of a request's sampling parameters: the one definition the router (at the
// public edge, as HTTP 400 / INVALID_ARGUMENT naming the parameter) and the worker (at admission,
// since its kernels and sampler depend on them: a NaN temperature or a min_p above 1 leaves no
// token to draw) both apply. Unset values take the defaults and are always allowed.
#ifndef EXPERTMESH_MODEL_REQUEST_SAMPLING_RULES_H_
#define EXPERTMESH_MODEL_REQUEST_SAMPLING_RULES_H_

#include <cstdint>
#include <optional>
#include <string>

namespace expertmesh::model {

// The most alternatives a request may ask for (OpenAI's limit).
inline constexpr int kMaxTopLogprobs = 20;

struct SamplingValues {
  std::optional<double> temperature;         // [0, 100]; below 1e-5 is greedy
  std::optional<int64_t> top_k;              // >= 1, or 0 / -1 for off
  std::optional<double> top_p;               // (0, 1]
  std::optional<double> min_p;               // [0, 1]
  std::optional<double> repetition_penalty;  // (0, 10]
  std::optional<double> presence_penalty;    // [-2, 2]
  std::optional<double> frequency_penalty;   // [-2, 2]
  int64_t top_logprobs = 0;                  // [0, kMaxTopLogprobs], only with logprobs
  bool logprobs = false;
};

struct SamplingRuleViolation {
  std::string parameter;  // e.g. "top_p"
  std::string message;    // e.g. "top_p must be in (0, 1], got 1.5"
};

// The first value outside its range (NaN and infinities are outside every range), or nullopt.
std::optional<SamplingRuleViolation> CheckSamplingValues(const SamplingValues& values);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_REQUEST_SAMPLING_RULES_H_
