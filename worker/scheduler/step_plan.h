// The work of one engine step, produced by Scheduler::Schedule() and run by the executor.
//
// For each ScheduledSequence the executor, in order:
//   1. (once per step, before any KV write) copies every block_copies[i].src to .dst in every
//      layer's K and V cache (copy-on-write of a shared partial block);
//   2. runs token_ids at positions, writing their KV into slot block_table[p / block_size] *
//      block_size + p % block_size for each position p, attending causally to positions
//      [0, context_len) through block_table;
//   3. if sample, samples one token from the logits of its last position with the request's
//      sampling parameters and history;
//   4. for each position p in [prompt_logprobs_begin, prompt_logprobs_end), scores prompt token
//      p + 1 (history.prompt[p + 1]) under the logits of position p, with prompt_top_logprobs
//      alternatives (sampling::ScoreToken).
// Then it hands the sampled tokens, in plan order of the sequences with sample set, and the
// scored prompt tokens, in plan order of the sequences with a non-empty prompt_logprobs range,
// to Scheduler::ProcessStepOutputs.
#ifndef EXPERTMESH_WORKER_SCHEDULER_STEP_PLAN_H_
#define EXPERTMESH_WORKER_SCHEDULER_STEP_PLAN_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/grammar/engine/grammar_matcher.h"
#include "worker/kv/kv_cache_manager.h"
#include "worker/sampling/sampler.h"
#include "worker/sampling/sampling_params.h"

namespace expertmesh::scheduler {

struct ScheduledSequence {
  std::string request_id;
  kv::SeqId seq = 0;
  std::vector<int32_t> token_ids;  // this step's tokens (a prefill chunk or one decode token)
  std::vector<int32_t> positions;  // absolute positions of token_ids (consecutive)
  std::vector<int32_t> block_table;
  int64_t context_len = 0;        // tokens in the cache after this step (last position + 1)
  bool is_prefill_chunk = false;  // false only for the decode of the last generated token
  bool sample = false;            // the chunk reaches the end of the known tokens
  // Valid until ProcessStepOutputs or Abort: what sampling needs.
  const sampling::SamplingParams* sampling = nullptr;
  sampling::SamplingHistory history;
  // Sampling sequences of a request with a grammar: its matcher, at the state after `history`
  // (the executor reads it; ProcessStepOutputs advances it), the request's stop token ids (ends
  // of sequence for the grammar, as its eos ids) and the tokens it may still generate, this
  // one included: min(max_tokens - generated, max_model_len - sequence length). Else null.
  const grammar::GrammarMatcher* matcher = nullptr;
  std::span<const int32_t> stop_token_ids;
  int64_t tokens_left = 0;
  // Prompt logprobs (GenerationRequest::prompt_logprobs): absolute positions of this chunk whose
  // logits score the next prompt token, each scored once per request; empty when begin == end.
  int64_t prompt_logprobs_begin = 0;
  int64_t prompt_logprobs_end = 0;
  int32_t prompt_top_logprobs = 0;
  int64_t NumPromptLogprobs() const { return prompt_logprobs_end - prompt_logprobs_begin; }
};

struct StepPlan {
  uint64_t step_id = 0;
  std::vector<ScheduledSequence> sequences;   // decodes first, then prefill chunks
  std::vector<kv::KvBlockCopy> block_copies;  // run before this step's KV writes
  std::vector<std::string> admitted;          // joined the running batch this step
  std::vector<std::string> preempted;         // lost their KV; back at the queue's front
  int64_t num_tokens = 0;                     // sum of token_ids sizes, <= the token budget

  bool empty() const { return sequences.empty(); }
  int NumToSample() const;
  // Sequences with a non-empty prompt_logprobs range.
  int NumWithPromptLogprobs() const;
};

}  // namespace expertmesh::scheduler

#endif  // EXPERTMESH_WORKER_SCHEDULER_STEP_PLAN_H_
