#include "worker/models/decoder_model.h"

#include <malloc.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/models/decode_graph.h"

namespace expertmesh::models {

uint64_t KvCacheSpec::BytesPerToken() const {
  const uint64_t per_layer = kv_heads * (k_dim + (v_is_k ? 0 : v_dim));
  return num_layers * per_layer * DTypeSize(dtype);
}

absl::StatusOr<KvCacheTensors> AllocateKvCache(Backend& backend, const KvCacheSpec& spec,
                                               int32_t num_blocks, int32_t block_size) {
  if (num_blocks < 1 || block_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv cache: num_blocks ", num_blocks, " and block_size ", block_size, " must be positive"));
  }
  KvCacheTensors kv;
  kv.num_blocks = num_blocks;
  kv.block_size = block_size;
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    ASSIGN_OR_RETURN(Tensor k, backend.Allocate(spec.dtype, {num_blocks, block_size, spec.kv_heads,
                                                             spec.k_dim}));
    RETURN_IF_ERROR(backend.Zero(k));
    Tensor v = k;
    if (!spec.v_is_k) {
      ASSIGN_OR_RETURN(
          v, backend.Allocate(spec.dtype, {num_blocks, block_size, spec.kv_heads, spec.v_dim}));
      RETURN_IF_ERROR(backend.Zero(v));
    }
    kv.k.push_back(std::move(k));
    kv.v.push_back(std::move(v));
  }
  return kv;
}

namespace {

absl::Status CheckI32(const Tensor& t, std::string_view name, int64_t len) {
  if (!t.defined() || t.dtype() != DType::kI32 || t.rank() != 1 || (len >= 0 && t.dim(0) != len)) {
    return absl::InvalidArgumentError(
        absl::StrCat("forward batch: ", std::string(name), " is ", t.DebugString(),
                     ", expected i32[", len >= 0 ? absl::StrCat(len) : std::string("m"), "]"));
  }
  return absl::OkStatus();
}

// The batch is built on the host (MakeForwardBatch, step messages); Forward copies it to the
// backend.
absl::Status CheckHostI32(const Tensor& t, std::string_view name, int rank) {
  if (!t.defined() || t.dtype() != DType::kI32 || t.rank() != rank ||
      t.device() != kernels::Device::kCpu) {
    return absl::InvalidArgumentError(absl::StrCat(
        "forward batch: ", std::string(name), " is ", t.DebugString(), " on ",
        std::string(DeviceName(t.device())), ", expected a host i32 tensor of rank ", rank));
  }
  return absl::OkStatus();
}

class DecoderModel final : public Model {
 public:
  DecoderModel(const model::ModelConfig& config, Backend* backend, const ModelOptions& options,
               DecoderParts parts, Tensor embed, Tensor final_norm, Tensor lm_head, Tensor rope,
               uint64_t weight_bytes)
      : collectives_(options.shard, options.comm, backend),
        config_(config),
        backend_(backend),
        cdt_(options.compute_dtype),
        trace_(options.trace),
        parts_(std::move(parts)),
        embed_(std::move(embed)),
        final_norm_(std::move(final_norm)),
        lm_head_(std::move(lm_head)),
        rope_(std::move(rope)),
        weight_bytes_(weight_bytes),
        workspace_(backend),
        decode_graphs_(backend, options.decode_graph_max_batch) {
    parts_.kv.dtype = cdt_;
  }

  const model::ModelConfig& config() const override { return config_; }
  KvCacheSpec kv_cache_spec() const override { return parts_.kv; }
  DType compute_dtype() const override { return cdt_; }
  int64_t max_positions() const override { return rope_.dim(0); }
  uint64_t weight_bytes() const override { return weight_bytes_; }
  uint64_t active_weight_bytes_per_token() const override {
    uint64_t bytes = TensorBytes(lm_head_) + TensorBytes(final_norm_) +
                     static_cast<uint64_t>(embed_.dim(1)) * DTypeSize(embed_.dtype());
    for (const DecoderLayer& l : parts_.layers) {
      bytes += TensorBytes(l.input_norm) + TensorBytes(l.post_norm) + l.attn->weight_bytes() +
               l.ffn->active_weight_bytes();
    }
    return bytes;
  }
  void SetTrace(TraceFn trace) override { trace_ = std::move(trace); }

  absl::Status Forward(const ForwardBatch& batch, KvCacheTensors& kv, Tensor& logits) override {
    RETURN_IF_ERROR(CheckBatch(batch, kv));
    const int64_t m = batch.logit_rows.dim(0);
    const int64_t vocab = config_.vocab_size;
    if (!logits.defined() || logits.dtype() != DType::kF32 || logits.rank() != 2 ||
        logits.dim(0) != m || logits.dim(1) != vocab ||
        (logits.device() != kernels::Device::kCpu && logits.device() != backend_->device())) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward: logits is ", logits.DebugString(), " on ",
                       std::string(DeviceName(logits.device())), ", expected f32[", m, ", ", vocab,
                       "] on the host or the backend"));
    }
    // Graph steps write into the graph's own buffer: host logits are copied out of it; backend
    // logits in the caller's tensor take the eager path (ForwardOnBackend avoids the copy).
    if (logits.device() == kernels::Device::kCpu && GraphStep(batch)) {
      ASSIGN_OR_RETURN(const Tensor graph_logits, RunGraphStep(batch, kv));
      return backend_->CopyToHost(graph_logits, logits.raw_data());
    }
    return RunEager(batch, kv, logits);
  }

  absl::StatusOr<Tensor> ForwardOnBackend(const ForwardBatch& batch, KvCacheTensors& kv) override {
    RETURN_IF_ERROR(CheckBatch(batch, kv));
    if (GraphStep(batch)) return RunGraphStep(batch, kv);
    const int64_t m = batch.logit_rows.dim(0);
    if (!backend_logits_.defined() || backend_logits_.dim(0) < m) {
      backend_logits_ = Tensor();  // released before the larger one is allocated
      ASSIGN_OR_RETURN(backend_logits_, backend_->Allocate(DType::kF32, {m, config_.vocab_size}));
    }
    ASSIGN_OR_RETURN(Tensor logits, backend_logits_.Slice(0, m));
    RETURN_IF_ERROR(RunEager(batch, kv, logits));
    return logits;
  }

 private:
  absl::Status CheckBatch(const ForwardBatch& batch, const KvCacheTensors& kv) const {
    RETURN_IF_ERROR(CheckI32(batch.token_ids, "token_ids", -1));
    const int64_t n = batch.token_ids.dim(0);
    if (n < 1) return absl::InvalidArgumentError("forward batch: no tokens");
    RETURN_IF_ERROR(CheckI32(batch.positions, "positions", n));
    RETURN_IF_ERROR(CheckI32(batch.slot_mapping, "slot_mapping", n));
    RETURN_IF_ERROR(CheckI32(batch.logit_rows, "logit_rows", -1));
    RETURN_IF_ERROR(CheckHostI32(batch.token_ids, "token_ids", 1));
    RETURN_IF_ERROR(CheckHostI32(batch.positions, "positions", 1));
    RETURN_IF_ERROR(CheckHostI32(batch.slot_mapping, "slot_mapping", 1));
    RETURN_IF_ERROR(CheckHostI32(batch.logit_rows, "logit_rows", 1));
    RETURN_IF_ERROR(CheckHostI32(batch.attention.query_start, "query_start", 1));
    RETURN_IF_ERROR(CheckHostI32(batch.attention.seq_lens, "seq_lens", 1));
    RETURN_IF_ERROR(CheckHostI32(batch.attention.block_tables, "block_tables", 2));
    if (batch.logit_rows.dim(0) < 1) {
      return absl::InvalidArgumentError("forward batch: no logit rows");
    }
    const KvCacheSpec& spec = parts_.kv;
    if (static_cast<int64_t>(kv.k.size()) != spec.num_layers || kv.v.size() != kv.k.size()) {
      return absl::InvalidArgumentError(absl::StrCat("forward: kv cache has ", kv.k.size(),
                                                     " layers, the model ", spec.num_layers));
    }
    return absl::OkStatus();
  }

  // Decode steps of a single rank replay as graphs (decode_graph.h).
  bool GraphStep(const ForwardBatch& batch) const {
    return !collectives_.active() && !trace_ && decode_graphs_.Accepts(batch);
  }
  absl::StatusOr<Tensor> RunGraphStep(const ForwardBatch& batch, KvCacheTensors& kv) {
    return decode_graphs_.Run(
        batch, config_.vocab_size,
        [&](const ForwardBatch& dev, const ForwardBatch& host, Workspace& ws, Tensor& out) {
          StepContext ctx = Context(ws, dev);
          return RunLayers(ctx, host, kv, out);
        });
  }
  absl::Status RunEager(const ForwardBatch& batch, KvCacheTensors& kv, Tensor& logits) {
    StepContext ctx = Context(workspace_, batch);
    ASSIGN_OR_RETURN(const ForwardBatch dev, StageBatch(ctx, batch));
    ctx.batch = &dev;
    return RunLayers(ctx, batch, kv, logits);
  }

  // A step's context over `batch` (in backend memory) with scratch from `workspace`.
  StepContext Context(Workspace& workspace, const ForwardBatch& batch) {
    StepContext ctx;
    ctx.backend = backend_;
    ctx.workspace = &workspace;
    ctx.batch = &batch;
    ctx.rope_cos_sin = &rope_;
    ctx.trace = &trace_;
    ctx.collectives = &collectives_;
    ctx.compute_dtype = cdt_;
    ctx.num_tokens = batch.token_ids.dim(0);
    return ctx;
  }

  // Embedding, the decoder layers, the final norm and lm_head over ctx.batch (`host`: the same
  // batch on the host), writing `logits` (host or backend memory).
  absl::Status RunLayers(StepContext& ctx, const ForwardBatch& host, KvCacheTensors& kv,
                         Tensor& logits) {
    const ForwardBatch& dev = *ctx.batch;
    const int64_t n = ctx.num_tokens, m = dev.logit_rows.dim(0);
    const int64_t hidden = config_.hidden_size;
    Backend& b = *backend_;

    ASSIGN_OR_RETURN(Tensor residual, ctx.Scratch("residual", cdt_, {n, hidden}));
    ASSIGN_OR_RETURN(Tensor normed, ctx.Scratch("normed", cdt_, {n, hidden}));
    ASSIGN_OR_RETURN(Tensor out, ctx.Scratch("block_out", cdt_, {n, hidden}));
    RETURN_IF_ERROR(Embed(ctx, host.token_ids, dev.token_ids, residual));
    ctx.Trace("embed", -1, residual);
    const float eps = static_cast<float>(config_.rms_norm_eps);
    for (int l = 0; l < static_cast<int>(parts_.layers.size()); ++l) {
      DecoderLayer& layer = parts_.layers[l];
      RETURN_IF_ERROR(b.RmsNorm(l == 0 ? residual : out, l == 0 ? nullptr : &residual,
                                layer.input_norm, eps, normed));
      RETURN_IF_ERROR(layer.attn->Forward(ctx, l, normed, kv.k[l], kv.v[l], out));
      RETURN_IF_ERROR(b.RmsNorm(out, &residual, layer.post_norm, eps, normed));
      ctx.Trace("residual", l, residual);
      RETURN_IF_ERROR(layer.ffn->Forward(ctx, l, normed, out));
    }
    RETURN_IF_ERROR(b.RmsNorm(out, &residual, final_norm_, eps, normed));
    ctx.Trace("final_norm", -1, normed);
    ASSIGN_OR_RETURN(Tensor rows, ctx.Scratch("logit_rows", cdt_, {m, hidden}));
    RETURN_IF_ERROR(b.Embedding(normed, dev.logit_rows, rows));
    ctx.Trace("logits_hidden", -1, rows);
    RETURN_IF_ERROR(LmHead(ctx, rows, logits));
    ctx.Trace("logits", -1, logits);
    return absl::OkStatus();
  }

  // The step's batch in backend memory: the host batch itself on the CPU; otherwise its seven
  // i32 tensors packed into one reused buffer with a single CopyFromHost.
  absl::StatusOr<ForwardBatch> StageBatch(StepContext& ctx, const ForwardBatch& host) {
    if (backend_->device() == kernels::Device::kCpu) return host;
    int64_t total = 0;
    for (const Tensor* p : host.fields()) total += p->numel();
    batch_host_.resize(static_cast<size_t>(total));
    int64_t off = 0;
    for (const Tensor* p : host.fields()) {
      std::memcpy(batch_host_.data() + off, p->raw_data(), p->nbytes());
      off += p->numel();
    }
    ASSIGN_OR_RETURN(Tensor all, ctx.Scratch("batch", DType::kI32, {total}));
    RETURN_IF_ERROR(backend_->CopyFromHost(batch_host_.data(), all));
    ForwardBatch dev;
    off = 0;
    const auto in = host.fields();
    const auto out = dev.fields();
    for (size_t i = 0; i < in.size(); ++i) {
      ASSIGN_OR_RETURN(Tensor slice, all.Slice(off, off + in[i]->numel()));
      ASSIGN_OR_RETURN(*out[i], slice.Reshape(in[i]->shape()));
      off += in[i]->numel();
    }
    return dev;
  }

  // Vocab-parallel embedding (shard.h): this rank's table holds its vocabulary rows, then zero
  // rows (at least one) that every id outside them reads; the all-reduce adds the one non-zero
  // row. The local ids are computed from the host ids and copied to the backend.
  absl::Status Embed(StepContext& ctx, const Tensor& host_ids, const Tensor& ids, Tensor& out) {
    if (!collectives_.active()) return backend_->Embedding(embed_, ids, out);
    const model::IndexRange rows = collectives_.spec().VocabRows(config_.vocab_size);
    const int64_t n = host_ids.dim(0);
    local_ids_host_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = host_ids.data<int32_t>()[i];
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("forward: token id ", id, " at position ", i,
                                                       " is outside [0, ", config_.vocab_size,
                                                       ")"));
      }
      const int64_t r = id - rows.begin;
      local_ids_host_[i] = static_cast<int32_t>(r >= 0 && r < rows.count ? r : rows.count);
    }
    ASSIGN_OR_RETURN(Tensor local, ctx.Scratch("embed_local_ids", DType::kI32, {n}));
    RETURN_IF_ERROR(backend_->CopyFromHost(local_ids_host_.data(), local));
    RETURN_IF_ERROR(backend_->Embedding(embed_, local, out));
    return collectives_.AllReduceWorld(out);
  }

  // lm_head into `logits` (host or backend memory). Vocab-parallel: each rank's lm_head holds
  // ceil(V/world) rows (zero-padded at the end of the vocabulary), so its logits slice has the
  // same width on every rank; the slices are all-gathered and laid out in vocabulary order on
  // the host.
  absl::Status LmHead(StepContext& ctx, const Tensor& rows, Tensor& logits) {
    const bool host_logits = logits.device() == kernels::Device::kCpu;
    if (!collectives_.active()) {
      if (logits.device() == backend_->device()) {
        return backend_->Linear(rows, lm_head_, Tensor(), logits);
      }
      ASSIGN_OR_RETURN(Tensor dev,
                       ctx.Scratch("logits", DType::kF32, {rows.dim(0), logits.dim(1)}));
      RETURN_IF_ERROR(backend_->Linear(rows, lm_head_, Tensor(), dev));
      return backend_->CopyToHost(dev, logits.raw_data());
    }
    const model::ParallelConfig& sh = collectives_.spec();
    const int64_t vocab = config_.vocab_size, m = rows.dim(0);
    const int64_t per = sh.VocabRowsPerRank(vocab);
    const int world = sh.WorldSize();
    ASSIGN_OR_RETURN(Tensor send, ctx.Scratch("lm_head_send", DType::kF32, {m, per}));
    RETURN_IF_ERROR(backend_->Linear(rows, lm_head_, Tensor(), send));
    ASSIGN_OR_RETURN(Tensor all, ctx.Scratch("lm_head_all", DType::kF32, {world, m, per}));
    RETURN_IF_ERROR(collectives_.AllGatherWorld(send, all));
    const float* src = all.data<float>();
    if (all.device() != kernels::Device::kCpu) {
      gathered_host_.resize(static_cast<size_t>(all.numel()));
      RETURN_IF_ERROR(backend_->CopyToHost(all, gathered_host_.data()));
      src = gathered_host_.data();
    }
    float* dst = logits.data<float>();
    if (!host_logits) {
      logits_host_.resize(static_cast<size_t>(logits.numel()));
      dst = logits_host_.data();
    }
    for (int r = 0; r < world; ++r) {
      const int64_t begin = std::min<int64_t>(vocab, per * r);
      const int64_t count = std::min<int64_t>(vocab, begin + per) - begin;
      for (int64_t i = 0; i < m && count > 0; ++i) {
        std::memcpy(dst + i * vocab + begin, src + (r * m + i) * per, count * sizeof(float));
      }
    }
    return host_logits ? absl::OkStatus() : backend_->CopyFromHost(dst, logits);
  }

  Collectives collectives_;
  model::ModelConfig config_;
  Backend* backend_;
  DType cdt_;
  TraceFn trace_;
  DecoderParts parts_;
  Tensor embed_, final_norm_, lm_head_, rope_;
  uint64_t weight_bytes_;
  Workspace workspace_;
  DecodeGraphs decode_graphs_;
  // Host staging reused from step to step (device backends; the sharded embedding).
  std::vector<int32_t> batch_host_, local_ids_host_;
  std::vector<float> gathered_host_, logits_host_;
  Tensor backend_logits_;  // ForwardOnBackend's eager-step logits, grown to the largest step
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> MakeDecoderModel(const model::ModelConfig& c,
                                                        WeightLoader& w, DecoderParts parts,
                                                        Backend* backend,
                                                        const ModelOptions& options) {
  if (options.compute_dtype != DType::kF32 && options.compute_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("compute dtype must be f32 or bf16, got ",
                                                   std::string(DTypeName(options.compute_dtype))));
  }
  // Vocab-parallel on a group: this rank's vocabulary rows, zero-padded to ceil(V/world) rows
  // (+1 for the embedding: the row every id of another rank reads); see DecoderModel::Embed and
  // LmHead. One rank holds all V rows and its embedding no padding row.
  const std::vector<int64_t> table = {c.vocab_size, c.hidden_size};
  const model::IndexRange rows = options.shard.VocabRows(c.vocab_size);
  const int64_t per = options.shard.VocabRowsPerRank(c.vocab_size);
  const bool sharded = options.shard.Sharded();
  Tensor embed, lm_head;
  if (sharded) {
    ASSIGN_OR_RETURN(embed, w.GetRowsPadded("model.embed_tokens.weight", table, rows.begin,
                                            rows.count, per + 1));
  } else {
    ASSIGN_OR_RETURN(embed, w.Get("model.embed_tokens.weight", table));
  }
  if (options.quantize_lm_head_fp8) {
    // lm_head of its own in fp8 (a copy of the table when tied).
    ASSIGN_OR_RETURN(
        lm_head, w.GetRowsQuantizedToFp8(
                     c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", table,
                     rows.begin, rows.count, per));
  } else if (c.tie_word_embeddings) {
    lm_head = embed;
    if (sharded) {
      ASSIGN_OR_RETURN(lm_head, embed.Slice(0, per));
    }
  } else {
    // All of it on one rank (GetRowsPadded is then Get).
    ASSIGN_OR_RETURN(lm_head,
                     w.GetRowsPadded("lm_head.weight", table, rows.begin, rows.count, per));
  }
  ASSIGN_OR_RETURN(Tensor norm, w.Get("model.norm.weight", {c.hidden_size}));
  int64_t max_positions =
      options.max_positions > 0 ? options.max_positions : c.max_position_embeddings;
  // Sliding-window attention is not implemented: serve only contexts the window covers, where
  // it equals full attention.
  if (c.sliding_window.has_value() && *c.sliding_window > 0) {
    max_positions = std::min(max_positions, *c.sliding_window);
  }
  ASSIGN_OR_RETURN(kernels::RopeScaling scaling, RuntimeRopeScaling(c));
  ASSIGN_OR_RETURN(Tensor rope_host,
                   kernels::BuildRopeCache(scaling, parts.rotary_dim, max_positions));
  ASSIGN_OR_RETURN(Tensor rope, backend->PrepareWeight(rope_host));
  const uint64_t weight_bytes = w.bytes_loaded();
  return std::unique_ptr<Model>(
      new DecoderModel(c, backend, options, std::move(parts), std::move(embed), std::move(norm),
                       std::move(lm_head), std::move(rope), weight_bytes));
}

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& model_dir, Backend* backend,
                                                 const ModelOptions& options) {
  ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(model_dir));
  RETURN_IF_ERROR(options.shard.Validate());
  if (options.shard.Sharded()) {
    if (options.comm == nullptr || options.comm->world_size() != options.shard.WorldSize() ||
        options.comm->rank() != options.shard.rank) {
      return absl::InvalidArgumentError(absl::StrCat("load model: ", options.shard.ToString(),
                                                     " needs a communicator of that world size "
                                                     "and rank"));
    }
  }
  ASSIGN_OR_RETURN(WeightLoader weights, WeightLoader::Open(model_dir, config));
  weights.set_shard(options.shard);
  weights.set_backend(backend);
  weights.set_compute_dtype(options.compute_dtype);
  if (options.quantize_fp8 && options.quantize_int4) {
    return absl::InvalidArgumentError("load model: quantize to fp8 or to int4, not both");
  }
  if (options.quantize_fp8) RETURN_IF_ERROR(weights.QuantizeLinearWeightsToFp8());
  if (options.quantize_int4) RETURN_IF_ERROR(weights.QuantizeExpertWeightsToInt4());
  absl::StatusOr<DecoderParts> parts;
  switch (config.architecture) {
    case model::Architecture::kLlama:
      parts = BuildLlamaLayers(config, weights);
      break;
    case model::Architecture::kMixtral:
      parts = BuildMixtralLayers(config, weights);
      break;
    case model::Architecture::kQwen2Moe:
      parts = BuildQwen2MoeLayers(config, weights);
      break;
    case model::Architecture::kQwen3Moe:
      parts = BuildQwen3MoeLayers(config, weights);
      break;
    case model::Architecture::kDeepseekV2:
    case model::Architecture::kDeepseekV3:
      parts = BuildDeepseekLayers(config, weights);
      break;
  }
  if (!parts.ok()) return parts.status();
  absl::StatusOr<std::unique_ptr<Model>> model =
      MakeDecoderModel(config, weights, *std::move(parts), backend, options);
  // Loading converts and repacks weights through transient buffers that lie between the
  // long-lived weights in the heap; freed, their pages would stay resident (measured: 57 MB
  // beside 123 MB of int4 weights). Hand every whole free page back.
  malloc_trim(0);
  return model;
}

}  // namespace expertmesh::models
