// Model: one forward pass of a decoder-only transformer over a batch of sequences laid out for
// the paged KV cache, written against kernels::Backend (no CPU or CUDA code here).
//
// Data flow of Forward():  token_ids -> embedding -> layers (attention over the paged cache,
// dense MLP or MoE) -> final norm -> gather the rows in `logit_rows` -> lm_head -> logits.
//
// Weights stay in the checkpoint's storage dtype (bf16 in memory: views of the mmapped
// safetensors where nothing has to change, until the backend's PrepareWeight copies them; fp8
// block-quantized weights are dequantized to bf16 at load; f32 tensors such as
// e_score_correction_bias stay f32). Activations use the compute dtype: kF32 (exact, for golden
// parity with transformers' fp32 run over the same weights) or kBF16 (fast; matches transformers'
// bf16 run within looser bounds). Logits are always f32.
//
// KV cache layout (see KvCacheSpec): per layer, k and v tensors of
// [num_blocks, block_size, kv_heads, dim]. GQA models cache the rank's k and v heads. DeepSeek
// (MLA) caches the compressed latent: one "head" of kv_lora_rank + qk_rope_head_dim values per
// token (normalised c_kv, then the roped k_pe), and v is the same tensor as k
// (KvCacheSpec::v_is_k); attention runs in the absorbed form (q_nope folded through kv_b_proj's
// key part, the output through its value part), which is what model/plan's memory plan counts.
//
// Thread safety: one thread drives a Model (it owns scratch buffers).
#ifndef EXPERTMESH_WORKER_MODELS_MODEL_H_
#define EXPERTMESH_WORKER_MODELS_MODEL_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "model/config/model_config.h"
#include "worker/comm/communicator.h"
#include "worker/models/shard.h"

namespace expertmesh::models {

using kernels::Backend;
using kernels::Tensor;

// Called with every named intermediate of a forward pass (STYLE habit 10), e.g.
// ("attn_out", 3, bf16[n, hidden]). Layer is -1 outside the decoder layers. The tensor is only
// valid during the call (scratch memory) and lives on the backend (host memory on the CPU;
// read it with Backend::CopyToHost elsewhere); copy what you keep. Names: see each block's file.
using TraceFn = std::function<void(std::string_view name, int layer, const Tensor& tensor)>;

struct ModelOptions {
  DType compute_dtype = DType::kF32;  // kF32 or kBF16
  // Rows of the RoPE table (the longest context served). 0 = config max_position_embeddings.
  int64_t max_positions = 0;
  TraceFn trace;  // optional
  // This rank's part of a worker group (shard.h) and the group's communicator, which must
  // outlive the model (required when the group has several ranks).
  model::ParallelConfig shard;
  comm::Communicator* comm = nullptr;
  // Decode steps of up to this many sequences run as recorded graphs on a backend that
  // records them (CUDA graphs; decode_graph.h), in power-of-two buckets; 0 = never. Single-rank
  // models without a trace only.
  int decode_graph_max_batch = 64;
  // Quantize a bf16/f16/f32 checkpoint's linear weights (attention and MLP projections; never
  // the router, norms, embedding or lm_head) to fp8 e4m3 with 128 x 128 block scales at load, as
  // published FP8 checkpoints hold them, on a backend that multiplies fp8 weights: half the
  // memory and half the bytes per decoded token of bf16. Ignored for a checkpoint already fp8.
  bool quantize_fp8 = false;
  // Quantize a bf16/f16/f32 checkpoint's routed-expert weights at load to int4 in groups of 128
  // along each row, symmetric, rounded to nearest (model/safetensors/int4_quantize.h, as
  // make-model writes int4 checkpoints), on a backend that multiplies q4 weights: a quarter of
  // bf16's bytes (plus one f32 scale per 128 values) for the weights that dominate an MoE's
  // memory and decode traffic. FailedPrecondition on other backends and for quantized
  // checkpoints. Not together with quantize_fp8.
  bool quantize_int4 = false;
  // Quantize lm_head (the embedding table's fp8 copy when they are tied; the embedding itself
  // stays as stored) to fp8 e4m3 in 128 x 128 blocks at load, on a backend that multiplies fp8
  // weights. Published FP8 checkpoints and --quantize fp8 keep lm_head in bf16; llama.cpp's Q8_0
  // does not. At batch 1 every token reads all of lm_head, vocab x hidden: 18% of an FP8
  // Qwen3-30B-A3B token's bytes in bf16, 9% in fp8, at the price of fp8 rounding in the logits
  // (WeightLoader::GetRowsQuantizedToFp8). Any checkpoint dtype but an int4 lm_head.
  bool quantize_lm_head_fp8 = false;
};

// One step's batch. All tensors are i32 host tensors (MakeForwardBatch builds them); Forward
// copies them to the backend's memory (one CopyFromHost into reused buffers; nothing on the
// CPU). `n` = tokens of the step, sequences concatenated in order.
struct ForwardBatch {
  Tensor token_ids;                        // [n] ids in [0, vocab)
  Tensor positions;                        // [n] absolute positions in [0, max_positions)
  kernels::PagedAttentionBatch attention;  // query_start [s+1], seq_lens [s], block_tables
  Tensor slot_mapping;                     // [n] cache slot of each token (block*bs + offset)
  Tensor logit_rows;                       // [m] token rows whose logits are wanted, m >= 1

  // The seven tensors in the order a packed copy of the batch stores them one after another
  // (DecoderModel's staging to the backend, decode_graph.h).
  std::array<Tensor*, 7> fields() {
    return {&token_ids,
            &positions,
            &slot_mapping,
            &logit_rows,
            &attention.query_start,
            &attention.seq_lens,
            &attention.block_tables};
  }
  std::array<const Tensor*, 7> fields() const {
    return {&token_ids,
            &positions,
            &slot_mapping,
            &logit_rows,
            &attention.query_start,
            &attention.seq_lens,
            &attention.block_tables};
  }
};

// What the KV cache of this model looks like (identical for every layer).
struct KvCacheSpec {
  int64_t num_layers = 0;
  int64_t kv_heads = 0;
  int64_t k_dim = 0;
  int64_t v_dim = 0;
  bool v_is_k = false;  // MLA latent cache: v_cache is the k_cache tensor itself
  DType dtype = DType::kF32;

  // Bytes one token occupies across all layers (k and v, v counted once when v_is_k).
  uint64_t BytesPerToken() const;
};

// The cache tensors, [num_blocks, block_size, kv_heads, dim] each; v[l] aliases k[l] when the
// spec says v_is_k.
struct KvCacheTensors {
  std::vector<Tensor> k;
  std::vector<Tensor> v;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
};

// Allocates (zeroed) cache tensors on `backend`. InvalidArgument for non-positive sizes;
// ResourceExhausted when the allocation fails.
absl::StatusOr<KvCacheTensors> AllocateKvCache(Backend& backend, const KvCacheSpec& spec,
                                               int32_t num_blocks, int32_t block_size);

class Model {
 public:
  virtual ~Model() = default;

  virtual const model::ModelConfig& config() const = 0;
  virtual KvCacheSpec kv_cache_spec() const = 0;
  virtual DType compute_dtype() const = 0;
  // Rows of the RoPE table: positions must stay below this.
  virtual int64_t max_positions() const = 0;
  // Bytes of weights held in memory (views of the checkpoint plus converted copies).
  virtual uint64_t weight_bytes() const = 0;
  // Bytes of weights read for one token at decode: every dense weight, the lm_head row block,
  // and top_k routed experts per MoE layer (the batch-1 roofline numerator).
  virtual uint64_t active_weight_bytes_per_token() const = 0;

  // Runs the batch, writing this step's k/v into `kv` at batch.slot_mapping and filling
  // `logits` [m, vocab] f32 (allocated by the caller, on the host or on the backend; host logits
  // of a device backend are complete when Forward returns) for the rows in batch.logit_rows.
  // Errors: InvalidArgument for inconsistent batch tensors (names the tensor), ids out of
  // range, a cache that does not match kv_cache_spec(); whatever the backend reports.
  virtual absl::Status Forward(const ForwardBatch& batch, KvCacheTensors& kv, Tensor& logits) = 0;
  // Runs the batch as Forward does and returns its logits [m, vocab] f32 where they were
  // computed, in backend memory (for Backend::SampleTokens: nothing crosses to the host), owned
  // by the model and valid until its next Forward. Errors as Forward.
  virtual absl::StatusOr<Tensor> ForwardOnBackend(const ForwardBatch& batch,
                                                  KvCacheTensors& kv) = 0;

  virtual void SetTrace(TraceFn trace) = 0;
};

// Loads `model_dir` (config.json + safetensors) for `backend`, which must outlive the model.
// Every weight goes through Backend::PrepareWeight once (see weight_loader.h); constants the
// forward pass needs (RoPE table, MLA selections) are made at load on the backend too.
// Errors: NotFound / InvalidArgument from the config and checkpoint readers (naming the file);
// InvalidArgument for a checkpoint tensor of the wrong shape or dtype (naming it);
// Unimplemented for a config feature the forward passes do not implement (naming it).
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& model_dir, Backend* backend,
                                                 const ModelOptions& options);

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_MODEL_H_
