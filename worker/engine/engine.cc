#include "worker/engine/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"
#include "worker/engine/step_sync.h"
#include "worker/kv/kv_pool_size.h"
#include "worker/models/forward_batch.h"

namespace expertmesh::engine {

using runtime::Tensor;

absl::StatusOr<Tensor> HostLogits(Tensor& buffer, int64_t rows, int64_t vocab) {
  const int64_t need = rows * vocab;
  if (!buffer.defined() || buffer.numel() < need) {
    ASSIGN_OR_RETURN(buffer, Tensor::Empty(DType::kF32, {need}));
  }
  ASSIGN_OR_RETURN(Tensor t, buffer.Slice(0, need));
  return t.Reshape({rows, vocab});
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const std::string& model_dir,
                                                       const EngineOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<kernels::cpu::CpuBackend> cpu,
                   kernels::cpu::CpuBackend::Create({.num_threads = options.num_threads}));
  std::unique_ptr<runtime::Backend> backend = std::move(cpu);
  ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(model_dir));
  models::ModelOptions mo;
  mo.compute_dtype = options.compute_dtype;
  mo.max_positions = options.max_model_len > 0
                         ? options.max_model_len
                         : std::min<int64_t>(config.max_position_embeddings, 32768);
  ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model,
                   models::LoadModel(model_dir, backend.get(), mo));
  return Create(std::move(backend), std::move(model), options);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<runtime::Backend> backend,
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
  ASSIGN_OR_RETURN(e->scheduler_, scheduler::Scheduler::Create(sc, e->kv_manager_.get()));
  e->backend_ = std::move(backend);
  e->model_ = std::move(model);
  return e;
}

absl::Status Engine::AddRequest(scheduler::GenerationRequest request) {
  return scheduler_->Submit(std::move(request));
}

absl::Status Engine::Abort(const std::string& id) { return scheduler_->Abort(id); }

EngineStats Engine::Stats() const {
  return {scheduler_->Stats(), steps_, tokens_computed_, tokens_generated_};
}

absl::StatusOr<std::vector<RequestOutput>> Engine::Step() {
  scheduler::StepPlan plan = scheduler_->Schedule();
  std::vector<RequestOutput> outputs;
  if (plan.empty()) return outputs;
  ++steps_;

  std::vector<models::SequenceChunk> chunks;
  chunks.reserve(plan.sequences.size());
  bool any_sample = false;
  for (const scheduler::ScheduledSequence& s : plan.sequences) {
    models::SequenceChunk c;
    c.tokens = s.token_ids;
    c.start_pos = s.positions.empty() ? 0 : s.positions.front();
    c.block_table = s.block_table;
    c.logits =
        s.sample ? models::SequenceChunk::Logits::kLast : models::SequenceChunk::Logits::kNone;
    any_sample |= s.sample;
    chunks.push_back(c);
    tokens_computed_ += s.token_ids.size();
  }
  // A step of mid-prompt chunks samples nothing, but the batch needs one logits row.
  if (!any_sample) chunks.front().logits = models::SequenceChunk::Logits::kLast;
  ASSIGN_OR_RETURN(models::ForwardBatch batch,
                   models::MakeForwardBatch(chunks, kv_tensors_.block_size));
  if (step_listener_) RETURN_IF_ERROR(step_listener_(plan.block_copies, batch));
  RETURN_IF_ERROR(CopyKvBlocks(*backend_, kv_tensors_, plan.block_copies));
  // Host logits (the sampler runs on the host; a device model copies them back itself).
  ASSIGN_OR_RETURN(Tensor logits, HostLogits(logits_buffer_, batch.logit_rows.dim(0),
                                             model_->config().vocab_size));
  RETURN_IF_ERROR(model_->Forward(batch, kv_tensors_, logits));
  RETURN_IF_ERROR(backend_->Synchronize());

  std::vector<sampling::SampledToken> sampled;
  const int64_t vocab = model_->config().vocab_size;
  int64_t row = 0;
  for (const scheduler::ScheduledSequence& s : plan.sequences) {
    if (!s.sample) continue;
    std::span<const float> l(logits.data<float>() + row * vocab, static_cast<size_t>(vocab));
    ++row;
    absl::StatusOr<sampling::SampledToken> t = sampler_.Sample(l, *s.sampling, s.history);
    if (!t.ok()) {
      return absl::InternalError(absl::StrCat("engine: sampling request ", s.request_id,
                                              " failed: ", t.status().message()));
    }
    sampled.push_back(*std::move(t));
  }
  ASSIGN_OR_RETURN(std::vector<scheduler::RequestUpdate> updates,
                   scheduler_->ProcessStepOutputs(plan, sampled));
  outputs.reserve(updates.size());
  for (scheduler::RequestUpdate& u : updates) {
    ++tokens_generated_;
    outputs.push_back({std::move(u.id), std::move(u.token), u.finish, u.num_output_tokens});
  }
  return outputs;
}

}  // namespace expertmesh::engine
