// Per-request sampling of the next token from fp32 logits.
//
// Order of operations (vLLM's, which keeps greedy decoding independent of the filters):
//   1. logprobs, if requested, are taken from the RAW logits: log_softmax of the model output
//      before penalties, temperature and filters. This is vLLM's default (logprobs_mode
//      "raw_logprobs"): the numbers describe the model, not the sampling settings, and stay
//      comparable across temperatures. OpenAI documents logprobs only as "the log probability
//      of the token"; we state ours here.
//   2. penalties: repetition (prompt + output), then frequency and presence (output).
//   3. greedy (temperature < kGreedyTemperature): argmax, lowest token id on ties.
//   4. otherwise logits / temperature -> softmax -> min_p -> top_k -> top_p (over the
//      probabilities renormalised after min_p and top_k) -> one draw u = CounterRandom(seed,
//      number of tokens generated so far) by inverse CDF over the kept tokens in token-id
//      order. Filters rank tokens by probability, lower id first on ties.
// A request's tokens therefore depend only on its own logits, parameters, history and seed:
// the same alone or in any batch, and after a preemption that recomputes it.
//
// Thread safety: a Sampler holds scratch buffers; use one per thread.
#ifndef EXPERTMESH_WORKER_SAMPLING_SAMPLER_H_
#define EXPERTMESH_WORKER_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/sampling/sampling_params.h"

namespace expertmesh::sampling {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  bool operator==(const TokenLogprob&) const = default;
};

struct SampledToken {
  int32_t token = 0;
  // Raw-logit log-probability of `token` (0 when logprobs were not requested).
  float logprob = 0;
  // The top_logprobs most likely tokens under the raw logits, most likely first (lower id
  // first on ties); empty unless requested.
  std::vector<TokenLogprob> top_logprobs;
};

// A request's token history, for penalties and for the step counter of the random stream.
struct SamplingHistory {
  std::span<const int32_t> prompt;
  std::span<const int32_t> output;  // tokens generated so far
};

// A uniform 64-bit value that depends only on (seed, counter): a counter-based generator,
// so draws need no state carried between steps. Deterministic across platforms.
uint64_t CounterRandom(uint64_t seed, uint64_t counter);
// CounterRandom mapped to [0, 1) with 53 random bits.
double CounterUniform(uint64_t seed, uint64_t counter);

// A kept token and its probability under the final (filtered, renormalised) distribution.
struct TokenProb {
  int32_t token = 0;
  double prob = 0;
};

class Sampler {
 public:
  // Samples the next token. `logits`: [vocab] fp32 for this request. History token ids must
  // be in [0, vocab).
  // Errors: INVALID_ARGUMENT for invalid params (ValidateSamplingParams), empty logits, a NaN
  // logit, no finite logit, or a history token outside the vocabulary.
  absl::StatusOr<SampledToken> Sample(std::span<const float> logits, const SamplingParams& params,
                                      const SamplingHistory& history);

  // The distribution step 4 draws from (penalties applied, temperature > 0), in token-id
  // order, probabilities summing to 1. Exposed for tests and tools. Errors as Sample.
  absl::StatusOr<std::vector<TokenProb>> Distribution(std::span<const float> logits,
                                                      const SamplingParams& params,
                                                      const SamplingHistory& history);

 private:
  absl::Status Prepare(std::span<const float> logits, const SamplingParams& params,
                       const SamplingHistory& history);
  void ApplyPenalties(const SamplingParams& params, const SamplingHistory& history);
  void Filter(const SamplingParams& params);

  std::vector<float> logits_;     // penalised logits
  std::vector<int32_t> counts_;   // occurrences in the output
  std::vector<uint8_t> seen_;     // token in prompt or output
  std::vector<int32_t> touched_;  // tokens whose counts_/seen_ are set (for reset)
  std::vector<TokenProb> kept_;   // filtered distribution
};

}  // namespace expertmesh::sampling

#endif  // EXPERTMESH_WORKER_SAMPLING_SAMPLER_H_
