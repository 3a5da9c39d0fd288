// Per-request sampling of the next token from fp32 logits.
//
// Order of operations (vLLM's, which keeps greedy decoding independent of the filters):
//   1. logprobs, if requested, are taken from the RAW logits: log_softmax of the model output
//      before penalties, temperature and filters. This is vLLM's default (logprobs_mode
//      "raw_logprobs"): the numbers describe the model, not the sampling settings, and stay
//      comparable across temperatures. OpenAI documents logprobs only as "the log probability
//      of the token"; we state ours here.
//   2. penalties: repetition (prompt + output), then frequency and presence (output).
//   3-4. the draw of Backend::SampleTokens (kernels/cpu/cpu_sampling.h, the same code):
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
#include "common/splitmix64.h"
#include "kernels/cpu/cpu_sampling.h"
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

// One prompt token scored by the logits of the position before it (vLLM's prompt_logprobs):
// the same raw-logit numbers as SampledToken's, plus the token's rank, which vLLM reports for
// prompt tokens.
struct PromptLogprob {
  int32_t token = 0;  // the prompt token
  float logprob = 0;  // log P(token | the prompt tokens before it), raw logits
  int32_t rank = 0;   // 1 + the number of tokens with a strictly higher logit
  // The k most likely tokens at this position, as SampledToken::top_logprobs.
  std::vector<TokenLogprob> top_logprobs;
  bool operator==(const PromptLogprob&) const = default;
};

// A request's token history, for penalties and for the step counter of the random stream.
struct SamplingHistory {
  std::span<const int32_t> prompt;
  std::span<const int32_t> output;  // tokens generated so far
};

// The random stream of draws (common/splitmix64.h): a uniform value that depends only on
// (seed, counter), so draws need no state carried between steps, and a GPU draw uses the same.
using ::expertmesh::CounterRandom;
using ::expertmesh::CounterUniform;

// A kept token and its probability under the final (filtered, renormalised) distribution.
using kernels::cpu::TokenProb;

// Scores `token` under one row of raw logits [vocab]: its log_softmax value, its rank and the
// `top_k` most likely tokens (most likely first, lower id first on ties). `scratch` is reused
// between calls. INVALID_ARGUMENT for empty logits, a NaN, no finite logit, or a token outside
// the row.
absl::StatusOr<PromptLogprob> ScoreToken(std::span<const float> logits, int32_t token,
                                         int32_t top_k, std::vector<TokenProb>& scratch);

class Sampler {
 public:
  // Samples the next token. `logits`: [vocab] fp32 for this request. History token ids must
  // be in [0, vocab). `allowed`, when not empty, is a constrained-decoding token bitmask
  // (ceil(vocab / 32) words, bit t % 32 of word t / 32 set = allowed, as Backend::MaskLogits):
  // the tokens it clears get -inf after the penalties and before the draw, so logprobs stay
  // those of the raw logits (step 1) while the draw only picks allowed tokens.
  // REQUIRES: params passed ValidateSamplingParams (the scheduler checks each request once, when
  // it is submitted). Errors: INVALID_ARGUMENT for empty logits, a NaN logit, no finite logit
  // (before or after `allowed`), a mask of the wrong size, or a history token outside the
  // vocabulary.
  absl::StatusOr<SampledToken> Sample(std::span<const float> logits, const SamplingParams& params,
                                      const SamplingHistory& history,
                                      std::span<const uint32_t> allowed = {});

  // The distribution step 4 draws from (penalties applied, temperature > 0), in token-id
  // order, probabilities summing to 1. Exposed for tests and tools. Errors as Sample.
  absl::StatusOr<std::vector<TokenProb>> Distribution(std::span<const float> logits,
                                                      const SamplingParams& params,
                                                      const SamplingHistory& history);

 private:
  absl::Status Prepare(std::span<const float> logits, const SamplingParams& params,
                       const SamplingHistory& history);
  void ApplyPenalties(const SamplingParams& params, const SamplingHistory& history);

  std::vector<float> logits_;             // penalised logits
  std::vector<int32_t> counts_;           // occurrences in the output
  std::vector<uint8_t> seen_;             // token in prompt or output
  std::vector<int32_t> touched_;          // tokens whose counts_/seen_ are set (for reset)
  kernels::cpu::RowSampler row_sampler_;  // steps 3-4, shared with the CPU backend
  std::vector<TokenProb> top_scratch_;    // step 1's top_logprobs
};

}  // namespace expertmesh::sampling

#endif  // EXPERTMESH_WORKER_SAMPLING_SAMPLER_H_
