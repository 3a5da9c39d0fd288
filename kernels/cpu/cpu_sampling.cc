#include "kernels/cpu/cpu_sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/splitmix64.h"

namespace expertmesh::kernels::cpu {

absl::Status CheckSamplingLogits(std::span<const float> logits) {
  bool any_finite = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i]) || logits[i] == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling: logit of token ", i, " is ", logits[i]));
    }
    any_finite |= std::isfinite(logits[i]);
  }
  if (!any_finite) return absl::InvalidArgumentError("sampling: every logit is -inf");
  return absl::OkStatus();
}

const std::vector<TokenProb>& RowSampler::Distribution(std::span<const float> logits,
                                                       const SamplingRow& p) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (float l : logits) max_logit = std::max(max_logit, l);
  // Probabilities relative to the most likely token (which gets 1): min_p compares directly.
  const double inv_t = 1.0 / p.temperature;
  kept_.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    const double e = std::exp((static_cast<double>(logits[i]) - max_logit) * inv_t);
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
  return kept_;
}

int32_t RowSampler::Sample(std::span<const float> logits, const SamplingRow& p) {
  if (p.temperature < kGreedyTemperature) {
    size_t best = 0;
    for (size_t i = 1; i < logits.size(); ++i) {
      if (logits[i] > logits[best]) best = i;  // strict: the lowest id wins ties
    }
    return static_cast<int32_t>(best);
  }
  Distribution(logits, p);
  const double u = CounterUniform(p.seed, p.counter);
  double cumulative = 0;
  for (const TokenProb& t : kept_) {
    cumulative += t.prob;
    if (u < cumulative) return t.token;
  }
  return kept_.back().token;  // rounding: u may exceed the summed mass by an ulp
}

}  // namespace expertmesh::kernels::cpu
