#include "worker/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_mask.h"

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

absl::StatusOr<PromptLogprob> ScoreToken(std::span<const float> logits, int32_t token,
                                         int32_t top_k, std::vector<TokenProb>& scratch) {
  if (logits.empty()) return absl::InvalidArgumentError("sampling: empty logits");
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: token ", token, " outside vocab ", logits.size()));
  }
  RETURN_IF_ERROR(kernels::cpu::CheckSamplingLogits(logits));
  // One pass for the maximum, one for the sum and the rank: log_softmax in double, as a
  // reference log_softmax over the row computes it.
  float max_logit = -std::numeric_limits<float>::infinity();
  for (float l : logits) max_logit = std::max(max_logit, l);
  const float own = logits[token];
  double sum = 0;
  int32_t higher = 0;
  for (float l : logits) {
    sum += std::exp(static_cast<double>(l) - max_logit);
    higher += l > own ? 1 : 0;
  }
  const double lse = max_logit + std::log(sum);
  PromptLogprob out{.token = token, .logprob = static_cast<float>(own - lse), .rank = higher + 1};
  if (top_k > 0) {
    scratch.resize(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) scratch[i] = {static_cast<int32_t>(i), logits[i]};
    const size_t n = std::min<size_t>(static_cast<size_t>(top_k), scratch.size());
    std::partial_sort(scratch.begin(), scratch.begin() + n, scratch.end(),
                      kernels::cpu::MoreLikely);
    out.top_logprobs.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      out.top_logprobs.push_back({scratch[i].token, static_cast<float>(scratch[i].prob - lse)});
    }
  }
  return out;
}

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
                                             const SamplingHistory& history,
                                             std::span<const uint32_t> allowed) {
  RETURN_IF_ERROR(Prepare(logits, params, history));
  if (!allowed.empty()) {
    if (allowed.size() != (logits.size() + 31) / 32) {
      return absl::InvalidArgumentError(absl::StrCat("sampling: a token mask of ", allowed.size(),
                                                     " words for vocab ", logits.size()));
    }
    kernels::cpu::MaskLogitsRow(allowed, logits_);
    if (absl::Status s = kernels::cpu::CheckSamplingLogits(logits_); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling: the token mask leaves nothing to draw: ", s.message()));
    }
  }
  SampledToken out;
  out.token = row_sampler_.Sample(logits_, params.Row(history.output.size()));
  if (params.logprobs) {
    // Prepare checked the row, so scoring a token the draw returned cannot fail.
    ASSIGN_OR_RETURN(PromptLogprob scored,
                     ScoreToken(logits, out.token, params.top_logprobs, top_scratch_));
    out.logprob = scored.logprob;
    out.top_logprobs = std::move(scored.top_logprobs);
  }
  return out;
}

}  // namespace expertmesh::sampling
