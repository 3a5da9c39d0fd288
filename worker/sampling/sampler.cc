#include "worker/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace expertmesh::sampling {
namespace {

uint64_t Mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Most likely first, lower token id first on ties: the one order every filter uses.
bool MoreLikely(const TokenProb& a, const TokenProb& b) {
  return a.prob != b.prob ? a.prob > b.prob : a.token < b.token;
}

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

uint64_t CounterRandom(uint64_t seed, uint64_t counter) {
  // Two rounds of a bijective mix keyed by the seed: distinct counters never collide for
  // one seed, and nearby seeds give unrelated streams.
  return Mix64(Mix64(seed ^ 0x3c6ef372fe94f82bULL) + counter * 0x9e3779b97f4a7c15ULL);
}

double CounterUniform(uint64_t seed, uint64_t counter) {
  return static_cast<double>(CounterRandom(seed, counter) >> 11) * 0x1.0p-53;
}

absl::Status Sampler::Prepare(std::span<const float> logits, const SamplingParams& params,
                              const SamplingHistory& history) {
  RETURN_IF_ERROR(ValidateSamplingParams(params));
  if (logits.empty()) return absl::InvalidArgumentError("sampling: empty logits");
  RETURN_IF_ERROR(CheckHistory(history.prompt, logits.size(), "prompt"));
  RETURN_IF_ERROR(CheckHistory(history.output, logits.size(), "output"));
  bool any_finite = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i]) || logits[i] == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling: logit of token ", i, " is ", logits[i]));
    }
    any_finite |= std::isfinite(logits[i]);
  }
  if (!any_finite) return absl::InvalidArgumentError("sampling: every logit is -inf");
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

void Sampler::Filter(const SamplingParams& p) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (float l : logits_) max_logit = std::max(max_logit, l);
  // Probabilities relative to the most likely token (which gets 1): min_p compares directly.
  const double inv_t = 1.0 / p.temperature;
  kept_.clear();
  for (size_t i = 0; i < logits_.size(); ++i) {
    const double e = std::exp((static_cast<double>(logits_[i]) - max_logit) * inv_t);
    if (e > 0 && e >= p.min_p) kept_.push_back({static_cast<int32_t>(i), e});
  }
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < kept_.size()) {
    std::nth_element(kept_.begin(), kept_.begin() + p.top_k, kept_.end(), MoreLikely);
    kept_.resize(p.top_k);
  }
  if (p.top_p < 1.0f) {
    double total = 0;
    for (const TokenProb& t : kept_) total += t.prob;
    const double target = p.top_p * total;
    // Sort only as long a head as the mass needs: usually a few tokens out of the vocabulary.
    size_t head = std::min<size_t>(64, kept_.size());
    for (;;) {
      std::partial_sort(kept_.begin(), kept_.begin() + head, kept_.end(), MoreLikely);
      double mass = 0;
      size_t keep = 0;
      while (keep < head && mass < target) mass += kept_[keep++].prob;
      if (mass >= target || head == kept_.size()) {
        kept_.resize(std::max<size_t>(keep, 1));
        break;
      }
      head = std::min(head * 4, kept_.size());
    }
  }
  // The draw walks the kept tokens in id order (built that way; restored after the filters
  // that reorder), so the no-filter path never sorts the vocabulary.
  if (p.top_k > 0 || p.top_p < 1.0f) {
    std::sort(kept_.begin(), kept_.end(),
              [](const TokenProb& a, const TokenProb& b) { return a.token < b.token; });
  }
  double total = 0;
  for (const TokenProb& t : kept_) total += t.prob;
  for (TokenProb& t : kept_) t.prob /= total;
}

absl::StatusOr<std::vector<TokenProb>> Sampler::Distribution(std::span<const float> logits,
                                                             const SamplingParams& params,
                                                             const SamplingHistory& history) {
  RETURN_IF_ERROR(Prepare(logits, params, history));
  if (params.IsGreedy()) {
    return absl::InvalidArgumentError("sampling: greedy parameters have no distribution");
  }
  Filter(params);
  return kept_;
}

absl::StatusOr<SampledToken> Sampler::Sample(std::span<const float> logits,
                                             const SamplingParams& params,
                                             const SamplingHistory& history) {
  RETURN_IF_ERROR(Prepare(logits, params, history));
  SampledToken out;
  if (params.IsGreedy()) {
    size_t best = 0;
    for (size_t i = 1; i < logits_.size(); ++i) {
      if (logits_[i] > logits_[best]) best = i;  // strict: the lowest id wins ties
    }
    out.token = static_cast<int32_t>(best);
  } else {
    Filter(params);
    const double u = CounterUniform(params.seed.value_or(0), history.output.size());
    double cumulative = 0;
    out.token = kept_.back().token;  // rounding: u may exceed the summed mass by an ulp
    for (const TokenProb& t : kept_) {
      cumulative += t.prob;
      if (u < cumulative) {
        out.token = t.token;
        break;
      }
    }
  }
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
      std::partial_sort(all.begin(), all.begin() + n, all.end(), MoreLikely);
      for (size_t i = 0; i < n; ++i) {
        out.top_logprobs.push_back({all[i].token, static_cast<float>(all[i].prob - lse)});
      }
    }
  }
  return out;
}

}  // namespace expertmesh::sampling
