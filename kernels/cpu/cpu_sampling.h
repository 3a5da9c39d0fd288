// The reference of Backend::SampleTokens (kernels/backend.h), one row at a time on the host:
// greedy below kGreedyTemperature, else softmax(logits / T) -> min_p -> top_k -> top_p -> one
// inverse-CDF draw u = CounterUniform(seed, counter) over the kept tokens in id order. The CPU
// backend samples with it, and so does the worker's host sampler (worker/sampling/sampler.h)
// after it has applied a request's penalties, so a token is the same whichever path drew it.
//
// Thread safety: a RowSampler holds scratch buffers; use one per thread.
#ifndef EXPERTMESH_KERNELS_CPU_CPU_SAMPLING_H_
#define EXPERTMESH_KERNELS_CPU_CPU_SAMPLING_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace expertmesh::kernels::cpu {

// A kept token and its probability under the final (filtered, renormalised) distribution.
struct TokenProb {
  int32_t token = 0;
  double prob = 0;
};

// Most likely first, lower token id first on ties: the one order every filter uses.
inline bool MoreLikely(const TokenProb& a, const TokenProb& b) {
  return a.prob != b.prob ? a.prob > b.prob : a.token < b.token;
}

// InvalidArgument naming the token for a NaN or +inf logit, or when every logit is -inf (or
// there are none): such a row has no distribution to draw from.
absl::Status CheckSamplingLogits(std::span<const float> logits);

class RowSampler {
 public:
  // The token drawn from `logits` (REQUIRES: CheckSamplingLogits ok, params in range).
  int32_t Sample(std::span<const float> logits, const SamplingRow& params);
  // The distribution a row with temperature >= kGreedyTemperature draws from, in token-id order,
  // probabilities summing to 1. Valid until the next call.
  const std::vector<TokenProb>& Distribution(std::span<const float> logits,
                                             const SamplingRow& params);

 private:
  std::vector<TokenProb> kept_;
};

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_CPU_SAMPLING_H_
