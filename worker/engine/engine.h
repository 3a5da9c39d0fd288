// Engine: one worker's inference loop on one backend — Scheduler (continuous batching, chunked
// prefill, paged KV with prefix cache) + Model (forward pass) + the KV cache tensors + Sampler.
//
// Each Step():  plan = scheduler.Schedule()
//               -> copy-on-write block copies in every layer's cache
//               -> ForwardBatch from the plan (logits only for sequences that sample, and
//                  for the prompt positions of requests that asked for prompt logprobs)
//               -> model.Forward (meanwhile, on a helper thread, the token masks of the rows
//                  whose request has a grammar: grammar_masks.h)
//               -> mask those rows' logits -> sample each such row with its request's parameters
//               -> redraw a constrained row whose token would not let its grammar complete
//                  within the request's tokens left (budget closing, grammar_masks.h)
//               -> score the prompt rows (k + 1 numbers kept per position, nothing more)
//               -> scheduler.ProcessStepOutputs -> one RequestOutput per sampled request.
// Requests are validated on AddRequest (scheduler rules: empty prompt, too long, max_tokens,
// sampling values, token ids): a bad request is refused there with INVALID_ARGUMENT and nothing
// else changes, so the requests already in the batch are never affected.
//
// Thread safety: none; one thread owns the engine (the server's engine loop, or the CLI).
#ifndef EXPERTMESH_WORKER_ENGINE_ENGINE_H_
#define EXPERTMESH_WORKER_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/engine/grammar_masks.h"
#include "worker/models/model.h"
#include "worker/sampling/sampler.h"
#include "worker/scheduler/request.h"
#include "worker/scheduler/scheduler.h"

namespace expertmesh::engine {

struct EngineOptions {
  DType compute_dtype = DType::kBF16;      // kF32 for golden parity
  uint64_t kv_cache_bytes = 256ull << 20;  // KV pool budget (the pool never exceeds it)
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
  int64_t max_num_batched_tokens = 2048;
  int32_t max_num_seqs = 64;
  int64_t max_model_len = 0;          // 0 = min(max_position_embeddings, 32768)
  uint64_t seed = 0;                  // for requests without a seed
  bool quantize_fp8 = false;          // models::ModelOptions::quantize_fp8 (Load only)
  bool quantize_int4 = false;         // models::ModelOptions::quantize_int4 (Load only)
  bool quantize_lm_head_fp8 = false;  // models::ModelOptions::quantize_lm_head_fp8 (Load only)
  // scheduler::SchedulerConfig::max_prompt_logprob_tokens: bounds a step's logits rows for
  // prompt logprobs (rows x vocab x 4 bytes of backend memory).
  int64_t max_prompt_logprob_tokens = 256;
};

struct RequestOutput {
  std::string id;
  sampling::SampledToken token;
  scheduler::FinishReason finish = scheduler::FinishReason::kNone;
  int64_t num_output_tokens = 0;
  std::optional<int64_t> cached_prompt_tokens;  // first token only (scheduler::RequestUpdate)
  // First token only, for a request with prompt_logprobs: prompt tokens 1..n-1.
  std::vector<sampling::PromptLogprob> prompt_logprobs;
};

struct EngineStats {
  scheduler::SchedulerStats scheduler;
  uint64_t steps = 0;
  uint64_t tokens_computed = 0;  // prompt + decode tokens run through the model
  uint64_t tokens_generated = 0;
  GrammarStats grammar;  // constrained decoding (all zero without grammars)
};

class Engine {
 public:
  // Loads `model_dir` onto `backend` (the caller chose it: the worker's --device, or a test's
  // CPU backend) with the options' compute dtype and context length. Errors: those of LoadModel
  // and of Create.
  static absl::StatusOr<std::unique_ptr<Engine>> Load(const std::string& model_dir,
                                                      std::unique_ptr<kernels::Backend> backend,
                                                      const EngineOptions& options);
  // Uses an existing backend and model (the model must run on `backend`). Errors:
  // InvalidArgument for bad options (naming the field), or a KV budget that holds no block.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::unique_ptr<kernels::Backend> backend,
                                                        std::unique_ptr<models::Model> model,
                                                        const EngineOptions& options);

  // Queues a request (see the class comment). INVALID_ARGUMENT naming the problem;
  // ALREADY_EXISTS for a live id.
  absl::Status AddRequest(scheduler::GenerationRequest request);
  // Drops a live request and frees its KV blocks at once. NOT_FOUND when it is not live.
  absl::Status Abort(const std::string& id);
  bool HasWork() const { return scheduler_->HasWork(); }

  // Runs one step. Returns the tokens sampled in it (none for a step of prefill chunks that
  // sample nothing). An error (backend failure) leaves the engine unusable for the live
  // requests: the caller should abort them.
  absl::StatusOr<std::vector<RequestOutput>> Step();

  // Called in every step after the plan is made and before the KV block copies and the forward
  // pass run here: the leader of a worker group hands them to the other ranks (step_sync.h).
  // An error fails the step.
  using StepListener = std::function<absl::Status(const std::vector<kv::KvBlockCopy>& copies,
                                                  const models::ForwardBatch& batch)>;
  void SetStepListener(StepListener listener) { step_listener_ = std::move(listener); }

  const model::ModelConfig& config() const { return model_->config(); }
  models::Model& model() { return *model_; }
  kernels::Backend& backend() { return *backend_; }
  EngineStats Stats() const;
  int64_t max_model_len() const { return max_model_len_; }
  // Bytes of the KV cache tensors (<= options.kv_cache_bytes).
  uint64_t kv_cache_bytes() const { return kv_bytes_; }
  int32_t num_kv_blocks() const { return kv_tensors_.num_blocks; }
  std::vector<uint64_t> CachedPrefixHashes(size_t max) const {
    return kv_manager_->CachedPrefixHashes(max);
  }

 private:
  Engine() = default;

  // The tokens of the plan's sampling sequences from `logits` [rows, vocab] (backend memory, one
  // row per sampling sequence in plan order). Every row is drawn where the logits are
  // (Backend::SampleTokens), so one copy of [rows] token ids reaches the host; a request with
  // penalties or logprobs also copies its own logits row, for the host sampler that has its
  // history (worker/sampling/sampler.h; its draw is the same code as the CPU backend's).
  absl::StatusOr<std::vector<sampling::SampledToken>> SampleStep(const scheduler::StepPlan& plan,
                                                                 const kernels::Tensor& logits);
  // Masks the logits rows of the constrained rows the backend draws (grammar_masks_, filled).
  absl::Status MaskBackendRows(kernels::Tensor& row_logits);
  // Budget closing: redraws each constrained row whose token would leave its grammar unable to
  // complete in time (GrammarMasks::NeedsClosing) from its closing mask, on the host.
  absl::Status CloseGrammars(const kernels::Tensor& logits,
                             std::vector<sampling::SampledToken>& sampled);
  // The prompt tokens the plan scores (ScheduledSequence::prompt_logprobs_begin/end), one
  // vector per sequence with a non-empty range, from `logits` rows first_row.. (laid out by
  // MakeForwardBatch after the sampling rows). Device rows come to the host a bounded block at
  // a time; only k + 1 numbers per position are kept.
  absl::StatusOr<std::vector<std::vector<sampling::PromptLogprob>>> ScorePrompts(
      const scheduler::StepPlan& plan, const kernels::Tensor& logits, int64_t first_row);

  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<models::Model> model_;
  std::unique_ptr<kv::KvCacheManager> kv_manager_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  models::KvCacheTensors kv_tensors_;
  sampling::Sampler sampler_;
  StepListener step_listener_;
  uint64_t kv_bytes_ = 0;
  int64_t max_model_len_ = 0;
  uint64_t steps_ = 0, tokens_computed_ = 0, tokens_generated_ = 0;
  // Sampling (SampleStep): per-row draws, the backend's token ids and their host copy, and a
  // host copy of one logits row for a request the host sampler must take.
  std::vector<kernels::SamplingRow> sampling_rows_;
  kernels::Tensor backend_tokens_;
  std::vector<int32_t> host_tokens_;
  std::vector<float> host_row_;
  // Constrained decoding: the step's masks, their backend copy and rows, and a closing mask.
  std::unique_ptr<GrammarMasks> grammar_masks_;
  kernels::Tensor backend_masks_;
  std::vector<int32_t> mask_rows_;
  std::vector<uint32_t> closing_mask_;
  uint64_t closing_checks_ = 0, closing_redraws_ = 0;
  double closing_seconds_ = 0, masking_seconds_ = 0;
  // Prompt scoring (ScorePrompts): a host copy of a block of device logits rows, and the
  // top-k scratch.
  std::vector<float> host_rows_;
  std::vector<sampling::TokenProb> score_scratch_;
};

}  // namespace expertmesh::engine

#endif  // EXPERTMESH_WORKER_ENGINE_ENGINE_H_
