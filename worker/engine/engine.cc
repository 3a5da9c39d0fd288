#include "worker/engine/engine.h"

#include <algorithm>
#include <chrono>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/step_sync.h"
#include "worker/kv/kv_pool_size.h"
#include "worker/models/forward_batch.h"

namespace expertmesh::engine {

using kernels::Tensor;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& model_dir,
                                                     std::unique_ptr<kernels::Backend> backend,
                                                     const EngineOptions& options) {
  if (backend == nullptr) return absl::InvalidArgumentError("engine: no backend");
  ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(model_dir));
  models::ModelOptions mo;
  mo.compute_dtype = options.compute_dtype;
  mo.quantize_fp8 = options.quantize_fp8;
  mo.quantize_int4 = options.quantize_int4;
  mo.quantize_lm_head_fp8 = options.quantize_lm_head_fp8;
  mo.max_positions = options.max_model_len > 0
                         ? options.max_model_len
                         : std::min<int64_t>(config.max_position_embeddings, 32768);
  ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model,
                   models::LoadModel(model_dir, backend.get(), mo));
  return Create(std::move(backend), std::move(model), options);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<kernels::Backend> backend,
                                                       std::unique_ptr<models::Model> model,
                                                       const EngineOptions& options) {
  if (options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: block_size must be >= 1, got ", options.block_size));
  }
  std::unique_ptr<Engine> e(new Engine());
  const models::KvCacheSpec spec = model->kv_cache_spec();
  ASSIGN_OR_RETURN(kv::KvPoolSize pool, kv::SizeKvPool(options.kv_cache_bytes, spec.BytesPerToken(),
                                                       options.block_size));
  ASSIGN_OR_RETURN(e->kv_tensors_,
                   models::AllocateKvCache(*backend, spec, pool.num_blocks, pool.block_size));
  e->kv_bytes_ = pool.pool_bytes;
  ASSIGN_OR_RETURN(
      kv::KvCacheManager manager,
      kv::KvCacheManager::Create({.num_blocks = pool.num_blocks,
                                  .block_size = pool.block_size,
                                  .enable_prefix_caching = options.enable_prefix_caching}));
  e->kv_manager_ = std::make_unique<kv::KvCacheManager>(std::move(manager));
  e->max_model_len_ = options.max_model_len > 0
                          ? std::min(options.max_model_len, model->max_positions())
                          : model->max_positions();
  scheduler::SchedulerConfig sc;
  sc.max_num_batched_tokens = options.max_num_batched_tokens;
  sc.max_num_seqs = options.max_num_seqs;
  sc.max_model_len = e->max_model_len_;
  sc.vocab_size = model->config().vocab_size;
  for (int64_t id : model->config().eos_token_ids) {
    if (id >= 0 && id < sc.vocab_size) sc.eos_token_ids.push_back(static_cast<int32_t>(id));
  }
  sc.seed = options.seed;
  sc.max_prompt_logprob_tokens = options.max_prompt_logprob_tokens;
  ASSIGN_OR_RETURN(e->scheduler_, scheduler::Scheduler::Create(sc, e->kv_manager_.get()));
  e->grammar_masks_ = std::make_unique<GrammarMasks>(model->config().vocab_size);
  e->backend_ = std::move(backend);
  e->model_ = std::move(model);
  return e;
}

absl::Status Engine::AddRequest(scheduler::GenerationRequest request) {
  return scheduler_->Submit(std::move(request));
}

absl::Status Engine::Abort(const std::string& id) { return scheduler_->Abort(id); }

EngineStats Engine::Stats() const {
  EngineStats stats{scheduler_->Stats(), steps_, tokens_computed_, tokens_generated_,
                    grammar_masks_->stats()};
  stats.grammar.closing_checks = closing_checks_;
  stats.grammar.closing_redraws = closing_redraws_;
  stats.grammar.closing_seconds = closing_seconds_;
  stats.grammar.masking_seconds = masking_seconds_;
  return stats;
}

absl::StatusOr<std::vector<RequestOutput>> Engine::Step() {
  scheduler::StepPlan plan = scheduler_->Schedule();
  std::vector<RequestOutput> outputs;
  if (plan.empty()) return outputs;
  ++steps_;

  std::vector<models::SequenceChunk> chunks;
  chunks.reserve(plan.sequences.size());
  bool any_rows = false;
  for (const scheduler::ScheduledSequence& s : plan.sequences) {
    models::SequenceChunk c;
    c.tokens = s.token_ids;
    c.start_pos = s.positions.empty() ? 0 : s.positions.front();
    c.block_table = s.block_table;
    c.logits =
        s.sample ? models::SequenceChunk::Logits::kLast : models::SequenceChunk::Logits::kNone;
    if (s.NumPromptLogprobs() > 0) {
      c.extra_logits_begin = s.prompt_logprobs_begin - c.start_pos;
      c.extra_logits_end = s.prompt_logprobs_end - c.start_pos;
    }
    any_rows |= s.sample || s.NumPromptLogprobs() > 0;
    chunks.push_back(c);
    tokens_computed_ += s.token_ids.size();
  }
  // A step of mid-prompt chunks samples nothing, but the batch needs one logits row.
  if (!any_rows) chunks.front().logits = models::SequenceChunk::Logits::kLast;
  ASSIGN_OR_RETURN(models::ForwardBatch batch,
                   models::MakeForwardBatch(chunks, kv_tensors_.block_size));
  // The grammar masks are filled while the forward pass runs; every way out of the step waits
  // for them (the matchers must not change under the helper thread).
  grammar_masks_->Start(plan);
  absl::Cleanup wait_for_masks = [this] { grammar_masks_->Wait(); };
  if (step_listener_) RETURN_IF_ERROR(step_listener_(plan.block_copies, batch));
  RETURN_IF_ERROR(CopyKvBlocks(*backend_, kv_tensors_, plan.block_copies));
  ASSIGN_OR_RETURN(const Tensor logits, model_->ForwardOnBackend(batch, kv_tensors_));
  grammar_masks_->Wait();
  ASSIGN_OR_RETURN(std::vector<sampling::SampledToken> sampled, SampleStep(plan, logits));
  ASSIGN_OR_RETURN(std::vector<std::vector<sampling::PromptLogprob>> scored,
                   ScorePrompts(plan, logits, /*first_row=*/plan.NumToSample()));
  ASSIGN_OR_RETURN(std::vector<scheduler::RequestUpdate> updates,
                   scheduler_->ProcessStepOutputs(plan, sampled, scored));
  outputs.reserve(updates.size());
  for (scheduler::RequestUpdate& u : updates) {
    ++tokens_generated_;
    outputs.push_back({std::move(u.id), std::move(u.token), u.finish, u.num_output_tokens,
                       u.cached_prompt_tokens, std::move(u.prompt_logprobs)});
  }
  return outputs;
}

absl::StatusOr<std::vector<sampling::SampledToken>> Engine::SampleStep(
    const scheduler::StepPlan& plan, const Tensor& logits) {
  sampling_rows_.clear();
  for (const scheduler::ScheduledSequence& s : plan.sequences) {
    if (s.sample) sampling_rows_.push_back(s.sampling->Row(s.history.output.size()));
  }
  const int64_t rows = static_cast<int64_t>(sampling_rows_.size());
  std::vector<sampling::SampledToken> sampled;
  if (rows == 0) {  // a step of prompt chunks: its one logits row is unused
    RETURN_IF_ERROR(backend_->Synchronize());
    return sampled;
  }
  if (!backend_tokens_.defined() || backend_tokens_.dim(0) < rows) {
    ASSIGN_OR_RETURN(backend_tokens_, backend_->Allocate(DType::kI32, {rows}));
  }
  ASSIGN_OR_RETURN(Tensor row_logits, logits.Slice(0, rows));
  ASSIGN_OR_RETURN(Tensor tokens, backend_tokens_.Slice(0, rows));
  absl::Status drawn = MaskBackendRows(row_logits);
  if (drawn.ok()) drawn = backend_->SampleTokens(row_logits, sampling_rows_, tokens);
  host_tokens_.resize(static_cast<size_t>(rows));
  if (drawn.ok()) drawn = backend_->CopyToHost(tokens, host_tokens_.data());
  if (drawn.ok()) drawn = backend_->Synchronize();  // a device reports bad rows here
  if (!drawn.ok()) {
    return absl::InternalError(absl::StrCat("engine: sampling failed: ", drawn.message()));
  }

  const int64_t vocab = logits.dim(1);
  sampled.reserve(static_cast<size_t>(rows));
  int64_t row = 0;
  // The host-drawn constrained rows follow the backend-drawn ones in grammar_masks_, in plan
  // order as here.
  size_t next_host_mask = static_cast<size_t>(grammar_masks_->num_backend_rows());
  for (const scheduler::ScheduledSequence& s : plan.sequences) {
    if (!s.sample) continue;
    const sampling::SamplingParams& p = *s.sampling;
    if (!p.HasPenalties() && !p.logprobs) {
      sampled.push_back({.token = host_tokens_[row++]});
      continue;
    }
    std::span<const float> l;
    if (logits.device() == kernels::Device::kCpu) {
      l = {logits.data<float>() + row * vocab, static_cast<size_t>(vocab)};
    } else {
      ASSIGN_OR_RETURN(const Tensor one, logits.Slice(row, row + 1));
      host_row_.resize(static_cast<size_t>(vocab));
      RETURN_IF_ERROR(backend_->CopyToHost(one, host_row_.data()));
      l = host_row_;
    }
    ++row;
    const std::span<const uint32_t> allowed =
        s.matcher != nullptr ? grammar_masks_->mask(next_host_mask++) : std::span<const uint32_t>();
    absl::StatusOr<sampling::SampledToken> t = sampler_.Sample(l, p, s.history, allowed);
    if (!t.ok()) {
      return absl::InternalError(absl::StrCat("engine: sampling request ", s.request_id,
                                              " failed: ", t.status().message()));
    }
    sampled.push_back(*std::move(t));
  }
  RETURN_IF_ERROR(CloseGrammars(logits, sampled));
  return sampled;
}

absl::Status Engine::MaskBackendRows(Tensor& row_logits) {
  const int64_t n = grammar_masks_->num_backend_rows();
  if (n == 0) return absl::OkStatus();
  const auto t0 = std::chrono::steady_clock::now();
  absl::Cleanup timed = [&] {
    masking_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const int64_t words = grammar_masks_->words();
  if (!backend_masks_.defined() || backend_masks_.dim(0) < n) {
    ASSIGN_OR_RETURN(backend_masks_, backend_->Allocate(DType::kI32, {n, words}));
  }
  ASSIGN_OR_RETURN(Tensor masks, backend_masks_.Slice(0, n));
  RETURN_IF_ERROR(backend_->CopyFromHost(grammar_masks_->backend_masks().data(), masks));
  mask_rows_.clear();
  for (int64_t i = 0; i < n; ++i) {
    mask_rows_.push_back(static_cast<int32_t>(grammar_masks_->rows()[i].row));
  }
  return backend_->MaskLogits(masks, mask_rows_, row_logits);
}

absl::Status Engine::CloseGrammars(const Tensor& logits,
                                   std::vector<sampling::SampledToken>& sampled) {
  if (grammar_masks_->rows().empty()) return absl::OkStatus();
  const auto t0 = std::chrono::steady_clock::now();
  absl::Cleanup timed = [&] {
    closing_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const int64_t vocab = logits.dim(1);
  for (const GrammarMasks::Row& g : grammar_masks_->rows()) {
    const scheduler::ScheduledSequence& s = *g.seq;
    sampling::SampledToken& drawn = sampled[static_cast<size_t>(g.row)];
    if (!GrammarMasks::NeedsClosing(s, drawn.token)) continue;
    ++closing_checks_;
    closing_mask_.resize(static_cast<size_t>(grammar_masks_->words()));
    if (!GrammarMasks::FillClosingMask(s, closing_mask_)) continue;  // nothing fits: keep it
    ++closing_redraws_;
    // The row's logits: raw for a host-drawn row, already masked by its grammar for a
    // backend-drawn one (the closing mask only removes more tokens, so that is the same).
    std::span<const float> l;
    if (logits.device() == kernels::Device::kCpu) {
      l = {logits.data<float>() + g.row * vocab, static_cast<size_t>(vocab)};
    } else {
      ASSIGN_OR_RETURN(const Tensor one, logits.Slice(g.row, g.row + 1));
      host_row_.resize(static_cast<size_t>(vocab));
      RETURN_IF_ERROR(backend_->CopyToHost(one, host_row_.data()));
      l = host_row_;
    }
    sampling::SamplingParams p = *s.sampling;
    p.seed = GrammarMasks::ClosingSeed(p.seed.value_or(0));
    absl::StatusOr<sampling::SampledToken> t = sampler_.Sample(l, p, s.history, closing_mask_);
    if (!t.ok()) {
      return absl::InternalError(absl::StrCat("engine: closing the grammar of request ",
                                              s.request_id, " failed: ", t.status().message()));
    }
    drawn = *std::move(t);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<sampling::PromptLogprob>>> Engine::ScorePrompts(
    const scheduler::StepPlan& plan, const Tensor& logits, int64_t first_row) {
  std::vector<std::vector<sampling::PromptLogprob>> scored;
  const int64_t vocab = logits.dim(1);
  const bool on_host = logits.device() == kernels::Device::kCpu;
  // Device rows come over in blocks of at most ~8 MiB of host memory (at least one row).
  const int64_t block_rows = std::max<int64_t>(1, (int64_t{8} << 20) / (vocab * 4));
  int64_t row = first_row;
  for (const scheduler::ScheduledSequence& s : plan.sequences) {
    const int64_t count = s.NumPromptLogprobs();
    if (count <= 0) continue;
    std::vector<sampling::PromptLogprob>& out = scored.emplace_back();
    out.reserve(static_cast<size_t>(count));
    for (int64_t done = 0; done < count;) {
      const int64_t rows = on_host ? count - done : std::min(block_rows, count - done);
      const float* base = nullptr;
      if (on_host) {
        base = logits.data<float>() + (row + done) * vocab;
      } else {
        ASSIGN_OR_RETURN(const Tensor block, logits.Slice(row + done, row + done + rows));
        host_rows_.resize(static_cast<size_t>(rows * vocab));
        RETURN_IF_ERROR(backend_->CopyToHost(block, host_rows_.data()));
        base = host_rows_.data();
      }
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t pos = s.prompt_logprobs_begin + done + i;  // scores prompt token pos + 1
        absl::StatusOr<sampling::PromptLogprob> p =
            sampling::ScoreToken({base + i * vocab, static_cast<size_t>(vocab)},
                                 s.history.prompt[pos + 1], s.prompt_top_logprobs, score_scratch_);
        if (!p.ok()) {
          return absl::InternalError(absl::StrCat("engine: prompt logprobs of request ",
                                                  s.request_id, " at position ", pos,
                                                  " failed: ", p.status().message()));
        }
        out.push_back(*std::move(p));
      }
      done += rows;
    }
    row += count;
  }
  return scored;
}

}  // namespace expertmesh::engine
