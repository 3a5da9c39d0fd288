#include "model/request/sampling_rules.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace expertmesh::model {
namespace {

// lo <= v <= hi (lo < v with open_low), v finite.
std::optional<SamplingRuleViolation> Range(const char* name, const std::optional<double>& v,
                                           double lo, double hi, bool open_low = false) {
  if (!v.has_value()) return std::nullopt;
  const double x = *v;
  const bool low_ok = open_low ? x > lo : x >= lo;
  if (std::isfinite(x) && low_ok && x <= hi) return std::nullopt;
  return SamplingRuleViolation{
      name, absl::StrCat(name, " must be in ", open_low ? "(" : "[", lo, ", ", hi, "], got ", x)};
}

}  // namespace

std::optional<SamplingRuleViolation> CheckSamplingValues(const SamplingValues& v) {
  if (auto bad = Range("temperature", v.temperature, 0, 100)) return bad;
  if (v.top_k.has_value() && *v.top_k < -1) {
    return SamplingRuleViolation{
        "top_k", absl::StrCat("top_k must be >= 1, or 0 / -1 for off, got ", *v.top_k)};
  }
  if (auto bad = Range("top_p", v.top_p, 0, 1, /*open_low=*/true)) return bad;
  if (auto bad = Range("min_p", v.min_p, 0, 1)) return bad;
  if (auto bad = Range("repetition_penalty", v.repetition_penalty, 0, 10, true)) return bad;
  if (auto bad = Range("presence_penalty", v.presence_penalty, -2, 2)) return bad;
  if (auto bad = Range("frequency_penalty", v.frequency_penalty, -2, 2)) return bad;
  if (v.top_logprobs < 0 || v.top_logprobs > kMaxTopLogprobs) {
    return SamplingRuleViolation{
        "top_logprobs",
        absl::StrCat("top_logprobs must be in [0, ", kMaxTopLogprobs, "], got ", v.top_logprobs)};
  }
  if (v.top_logprobs > 0 && !v.logprobs) {
    return SamplingRuleViolation{"top_logprobs", "top_logprobs requires logprobs to be enabled"};
  }
  return std::nullopt;
}

}  // namespace expertmesh::model
