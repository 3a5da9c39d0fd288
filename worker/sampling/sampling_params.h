// Per-request sampling parameters (the worker's mirror of internal.v1.Sampling) and their
// validation. Semantics follow the public APIs users know:
//   temperature         0 = greedy (argmax, lowest token id on ties); otherwise logits / T.
//   top_k               keep the k most likely tokens; 0 or -1 = off; k >= vocab = off.
//   top_p               keep the smallest most-likely set with probability mass >= top_p.
//   min_p               keep tokens with p >= min_p * p(most likely token); 0 = off.
//   repetition_penalty  Hugging Face: for every token of prompt + output, a positive logit is
//                       divided by it, a negative one multiplied; 1 = off.
//   presence_penalty    OpenAI: subtracted once from every token generated so far.
//   frequency_penalty   OpenAI: subtracted once per occurrence in the generated tokens.
//   seed                the request's random stream; the draw of output token i depends only on
//                       (seed, i) and the logits, never on the batch (see CounterRandom).
//   logprobs            report the chosen token's log-probability, and top_logprobs
//                       alternatives (see SampledToken for which distribution).
#ifndef EXPERTMESH_WORKER_SAMPLING_SAMPLING_PARAMS_H_
#define EXPERTMESH_WORKER_SAMPLING_SAMPLING_PARAMS_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "model/request/sampling_rules.h"

namespace expertmesh::sampling {

// The most alternatives a request may ask for (OpenAI's limit).
inline constexpr int kMaxTopLogprobs = model::kMaxTopLogprobs;
// Temperatures below this are greedy (as vLLM: tiny temperatures overflow exp()).
inline constexpr float kGreedyTemperature = kernels::kGreedyTemperature;

struct SamplingParams {
  float temperature = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;  // nullopt: the scheduler draws one at submission
  bool logprobs = false;
  int32_t top_logprobs = 0;

  bool IsGreedy() const { return temperature < kGreedyTemperature; }
  // Whether the draw needs the request's history (penalties), which only the host sampler has.
  bool HasPenalties() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
  // The backend's draw for this request's next token (`generated` tokens so far); the seed must
  // be set (the scheduler draws one at submission).
  kernels::SamplingRow Row(uint64_t generated) const {
    return {.temperature = temperature,
            .top_k = top_k,
            .top_p = top_p,
            .min_p = min_p,
            .seed = seed.value_or(0),
            .counter = generated};
  }
};

// OK, or INVALID_ARGUMENT naming the field, its allowed range and the value given, by the rules
// the router applies to public requests too (model/request/sampling_rules.h): the scheduler
// checks each request once, when it is submitted, so that no value its kernels cannot draw with
// reaches a step shared with other requests.
absl::Status ValidateSamplingParams(const SamplingParams& params);

}  // namespace expertmesh::sampling

#endif  // EXPERTMESH_WORKER_SAMPLING_SAMPLING_PARAMS_H_
