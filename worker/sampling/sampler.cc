#include "worker/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace expertmesh::sampling {
namespace {

absl::Status CheckHistory(std::span<const int32_t> tokens, size_t vocab, const char* what) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || static_cast<size_t>(tokens[i]) >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("sampling: ", what, " token ", i, " is id ",
                                                     tokens[i], ", outside vocab ", vocab));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Sampler::Prepare(std::span<const float> logits, const SamplingParams& params,
                              const SamplingHistory& history) {
  if (logits.empty()) return absl::InvalidArgumentError("sampling: empty logits");
  RETURN_IF_ERROR(CheckHistory(history.prompt, logits.size(), "prompt"));
  RETURN_IF_ERROR(CheckHistory(history.output, logits.size(), "output"));
  RETURN_IF_ERROR(kernels::cpu::CheckSamplingLogits(logits));
  logits_.assign(logits.begin(), logits.end());
  ApplyPenalties(params, history);
  return absl::OkStatus();
}

void Sampler::ApplyPenalties(const SamplingParams& p, const SamplingHistory& history) {
  const size_t vocab = logits_.size();
  if (seen_.size() != vocab) {
    seen_.assign(vocab, 0);
    counts_.assign(vocab, 0);
  }
  touched_.clear();
  auto touch = [&](int32_t t) {
    if (!seen_[t]) {
      seen_[t] = 1;
      touched_.push_back(t);
    }
  };
  for (int32_t t : history.prompt) touch(t);
  for (int32_t t : history.output) {
    touch(t);
    ++counts_[t];
  }
  for (int32_t t : touched_) {
    float& l = logits_[t];
    if (p.repetition_penalty != 1.0f)
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    if (counts_[t] > 0) {
      l -= p.frequency_penalty * static_cast<float>(counts_[t]) + p.presence_penalty;
    }
  }
  for (int32_t t : touched_) {  // leave the scratch zeroed for the next call
    seen_[t] = 0;
    counts_[t] = 0;
  }
}

absl::StatusOr<std::vector<TokenProb>> Sampler::Distribution(std::span<const float> logits,
                                                             const SamplingParams& params,
                                                             const SamplingHistory& history) {
  RETURN_IF_ERROR(Prepare(logits, params, history));
  if (params.IsGreedy()) {
    return absl::InvalidArgumentError("sampling: greedy parameters have no distribution");
  }
  return row_sampler_.Distribution(logits_, params.Row(history.output.size()));
}

absl::StatusOr<SampledToken> Sampler::Sample(std::span<const float> logits,
                                             const SamplingParams& params,
                                             const SamplingHistory& history) {
  RETURN_IF_ERROR(Prepare(logits, params, history));
  SampledToken out;
  out.token = row_sampler_.Sample(logits_, params.Row(history.output.size()));
  if (params.logprobs) {
    float max_logit = -std::numeric_limits<float>::infinity();
    for (float l : logits) max_logit = std::max(max_logit, l);
    double sum = 0;
    for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
    const double lse = max_logit + std::log(sum);
    out.logprob = static_cast<float>(logits[out.token] - lse);
    if (params.top_logprobs > 0) {
      std::vector<TokenProb> all(logits.size());
      for (size_t i = 0; i < logits.size(); ++i) all[i] = {static_cast<int32_t>(i), logits[i]};
      const size_t n = std::min<size_t>(params.top_logprobs, all.size());
      std::partial_sort(all.begin(), all.begin() + n, all.end(), kernels::cpu::MoreLikely);
      for (size_t i = 0; i < n; ++i) {
        out.top_logprobs.push_back({all[i].token, static_cast<float>(all[i].prob - lse)});
      }
    }
  }
  return out;
}

}  // namespace expertmesh::sampling
