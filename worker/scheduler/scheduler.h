// Scheduler: continuous batching with chunked prefill over a paged KV cache.
//
// Each Schedule() builds one step under a token budget (max_num_batched_tokens) and a cap on
// running sequences (max_num_seqs):
//   1. running decodes (one token each), in admission order;
//   2. the next chunks of running, partially prefilled requests, in admission order;
//   3. waiting requests in FCFS order (preempted ones first, oldest first), each starting
//      after its longest cached prefix, until the budget, the cap or the KV pool runs out.
//      The queue is strict: a request that does not fit blocks those behind it.
// When a running request needs a block and the pool is empty, the most recently admitted
// running request is preempted (recompute): its blocks are freed, it returns to the front of
// the queue with its generated tokens, and later recomputes prompt + output (its full blocks
// often survive in the prefix cache). No admissions happen in a step that preempted.
//
// Request validation happens in Submit(); a rejected request changes nothing.
// Thread safety: none; the leader's engine thread calls every method.
#ifndef EXPERTMESH_WORKER_SCHEDULER_SCHEDULER_H_
#define EXPERTMESH_WORKER_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/grammar/engine/grammar_matcher.h"
#include "worker/kv/kv_cache_manager.h"
#include "worker/scheduler/request.h"
#include "worker/scheduler/step_plan.h"

namespace expertmesh::scheduler {

struct SchedulerConfig {
  int64_t max_num_batched_tokens = 2048;  // token budget per step
  int32_t max_num_seqs = 64;              // running sequences at most
  int64_t max_model_len = 0;              // context length (prompt + output)
  int64_t vocab_size = 0;
  std::vector<int32_t> eos_token_ids;
  uint64_t seed = 0;  // seeds requests that bring none
  // Tokens per step of a request whose prompt logprobs are still being scored: every such
  // token needs a [vocab] f32 logits row, so this bounds the step's logits memory
  // (rows x vocab x 4 bytes on the backend) however long the prompt is.
  int64_t max_prompt_logprob_tokens = 256;
};

struct SchedulerStats {
  int32_t num_waiting = 0;
  int32_t num_running = 0;
  int64_t num_preemptions = 0;        // since creation
  int64_t num_prefix_hit_tokens = 0;  // prompt tokens skipped thanks to the prefix cache
  kv::KvCacheStats kv;
};

class Scheduler {
 public:
  // INVALID_ARGUMENT for a budget, cap, context length or vocab size < 1, or eos ids outside
  // the vocabulary. `kv` is used by this scheduler only, and must outlive it.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerConfig& config,
                                                           kv::KvCacheManager* kv);

  // Queues a request. INVALID_ARGUMENT with a message naming the problem for: an empty id or
  // prompt, a prompt that leaves no room in the context, max_tokens < 1 or beyond the context,
  // token ids (prompt or stop) outside the vocabulary, invalid sampling values, a request
  // whose prompt + max_tokens can never fit in the KV pool, or a grammar with ignore_eos or
  // compiled for another vocabulary size. ALREADY_EXISTS for a live id.
  absl::Status Submit(GenerationRequest request);

  // Drops a waiting or running request and frees its KV blocks at once. A plan already
  // returned by Schedule() may still list it; ProcessStepOutputs then ignores it.
  // NOT_FOUND for an unknown (or finished) id.
  absl::Status Abort(const std::string& id);

  // Plans the next step (see the class comment). An empty plan means nothing can run.
  // REQUIRES: the previous plan went through ProcessStepOutputs.
  StepPlan Schedule();

  // Applies a step's results: `sampled` holds one token per sequence of `plan` with sample
  // set, in plan order. Appends tokens, advances grammars (a token the grammar refuses ends its
  // request with kLength), checks stop conditions (eos unless ignore_eos, stop token ids,
  // max_tokens, context length) and frees finished requests. Returns one update
  // per sampled sequence that is still live.
  // `prompt_logprobs` holds, for each sequence of `plan` with a non-empty prompt_logprobs range
  // (in plan order), that range's scored prompt tokens; they are kept with the request and
  // returned in the update of its first token.
  // FAILED_PRECONDITION if `plan` is not the last plan scheduled or was already processed;
  // INVALID_ARGUMENT when the number of tokens or of scored prompt tokens is wrong or a token
  // is outside the vocabulary (then nothing is applied).
  absl::StatusOr<std::vector<RequestUpdate>> ProcessStepOutputs(
      const StepPlan& plan, std::span<const sampling::SampledToken> sampled,
      std::span<const std::vector<sampling::PromptLogprob>> prompt_logprobs = {});

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  SchedulerStats Stats() const;
  // Ids in queue / admission order (for tests and load reports).
  std::vector<std::string> WaitingIds() const;
  std::vector<std::string> RunningIds() const;

 private:
  struct Sequence {
    GenerationRequest request;
    kv::SeqId seq = 0;
    std::vector<int32_t> tokens;  // prompt + output
    int64_t num_computed = 0;     // tokens whose KV is in the cache
    // Prompt tokens the prefix cache supplied at the first admission (-1: not admitted yet).
    int64_t cached_prompt_tokens = -1;
    // Prompt logprobs: positions scored so far (they survive a preemption, so a recompute
    // never scores a position twice), and the results until the first token carries them.
    int64_t num_prompt_scored = 0;
    std::vector<sampling::PromptLogprob> prompt_logprobs;
    // Requests with a grammar: the grammar's state after the output so far. It survives a
    // preemption with the output it tracks.
    std::unique_ptr<grammar::GrammarMatcher> matcher;
    int64_t NumOutput() const {
      return static_cast<int64_t>(tokens.size() - request.prompt.size());
    }
    // Positions 0 .. prompt - 2 each score the next prompt token.
    bool PromptLogprobsPending() const {
      return request.prompt_logprobs.has_value() &&
             num_prompt_scored < static_cast<int64_t>(request.prompt.size()) - 1;
    }
  };
  struct Entry {  // a sequence scheduled in the step being built
    Sequence* seq;
    int64_t num_new;
    std::vector<kv::KvBlockCopy> copies;
    bool removed = false;
  };

  Scheduler(const SchedulerConfig& config, kv::KvCacheManager* kv) : config_(config), kv_(kv) {}

  absl::Status Validate(const GenerationRequest& request) const;
  // Allocates for a running sequence, preempting the most recently admitted ones as needed.
  // False when `s` itself had to be preempted.
  bool ScheduleRunning(Sequence* s, int64_t num_new, std::vector<Entry>& entries, int64_t& budget,
                       StepPlan& plan);
  void Preempt(Sequence* victim, std::vector<Entry>& entries, int64_t& budget, StepPlan& plan);
  void ScheduleWaiting(std::vector<Entry>& entries, int64_t& budget, StepPlan& plan);
  FinishReason CheckStop(const Sequence& s, int32_t token) const;
  // Advances `s`'s grammar by its new last token `token`; false (logged) when the grammar
  // refuses it.
  bool AdvanceGrammar(Sequence& s, int32_t token) const;
  // The most tokens `s` may compute in one step (max_prompt_logprob_tokens while its prompt
  // logprobs are pending).
  int64_t ChunkLimit(const Sequence& s, int64_t budget) const;
  void Remove(Sequence* s);

  SchedulerConfig config_;
  kv::KvCacheManager* kv_;
  absl::flat_hash_map<std::string, std::unique_ptr<Sequence>> by_id_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order
  kv::SeqId next_seq_ = 0;
  uint64_t next_step_ = 1;
  uint64_t pending_step_ = 0;  // the plan awaiting ProcessStepOutputs (0: none)
  int64_t num_preemptions_ = 0;
  int64_t num_prefix_hit_tokens_ = 0;
};

}  // namespace expertmesh::scheduler

#endif  // EXPERTMESH_WORKER_SCHEDULER_SCHEDULER_H_
