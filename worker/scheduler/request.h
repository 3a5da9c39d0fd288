// What a caller submits to the scheduler, and what comes back per step.
#ifndef EXPERTMESH_WORKER_SCHEDULER_REQUEST_H_
#define EXPERTMESH_WORKER_SCHEDULER_REQUEST_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/grammar/engine/compiled_grammar.h"
#include "worker/sampling/sampler.h"
#include "worker/sampling/sampling_params.h"

namespace expertmesh::scheduler {

// Longest accepted GenerationRequest::cache_salt (routers send 32 bytes).
inline constexpr size_t kMaxCacheSaltBytes = 64;

struct GenerationRequest {
  std::string id;  // unique among live requests
  std::vector<int32_t> prompt;
  sampling::SamplingParams sampling;
  int64_t max_tokens = 16;  // >= 1; prompt + max_tokens <= the context length
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Per-tenant prefix-cache salt (model::KvRootHash): cached blocks are shared only between
  // requests with equal salts. Empty: the shared cache.
  std::string cache_salt;
  // vLLM's prompt_logprobs: when set (0..kMaxTopLogprobs alternatives), the engine scores every
  // prompt token i >= 1 under the logits of position i - 1 and returns them with the first
  // token (RequestUpdate::prompt_logprobs). Such a request never starts from cached prefix
  // blocks, since they have no logits: its whole prompt is computed.
  std::optional<int32_t> prompt_logprobs;
  // Constrained decoding: every output token is one the grammar allows, the end of sequence
  // (an eos id, or one of stop_token_ids) only where the grammar may end, and the output is
  // closed so that it completes within max_tokens (worker/engine/grammar_masks.h). Compiled
  // before it reaches the scheduler (off the engine thread), against a vocabulary of the
  // model's vocab_size. Null: unconstrained. Refused with ignore_eos (the grammar says where the
  // output ends).
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
};

enum class FinishReason {
  kNone,  // still running
  kStop,  // an eos token (unless ignore_eos) or a stop token id was generated
  // max_tokens reached, or the context is full (or, never expected, the grammar refused a token
  // the engine drew: the output is cut there).
  kLength,
};
std::string_view FinishReasonName(FinishReason reason);

// One request's result of a step that sampled for it.
struct RequestUpdate {
  std::string id;
  sampling::SampledToken token;  // appended to the request's output
  FinishReason finish = FinishReason::kNone;
  int64_t num_output_tokens = 0;  // including this one
  // On the request's first token only: prompt tokens whose KV came from the prefix cache when
  // it was first admitted (OpenAI usage.prompt_tokens_details.cached_tokens).
  std::optional<int64_t> cached_prompt_tokens;
  // On the request's first token only, when it asked for prompt_logprobs: prompt tokens 1..n-1
  // in order (prompt token 0 has no logprob).
  std::vector<sampling::PromptLogprob> prompt_logprobs;
};

}  // namespace expertmesh::scheduler

#endif  // EXPERTMESH_WORKER_SCHEDULER_REQUEST_H_
