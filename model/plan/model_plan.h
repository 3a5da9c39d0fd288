// Parameter counts and the per-rank memory plan of a model under a ParallelConfig. Both are
// computed from ExpectedTensors, so they agree with what a checkpoint holds.
#ifndef EXPERTMESH_MODEL_PLAN_MODEL_PLAN_H_
#define EXPERTMESH_MODEL_PLAN_MODEL_PLAN_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config/model_config.h"
#include "model/plan/parallel_config.h"
#include "model/plan/tensor_role.h"

namespace expertmesh::model {

struct ParameterCounts {
  std::array<int64_t, kNumTensorRoles> by_role{};  // indexed by TensorRole
  int64_t total = 0;
  // Parameters one token touches: everything except the routed experts, plus
  // num_experts_per_tok of them in each MoE layer. Embedding and lm_head are included (the
  // convention of the published "active" numbers).
  int64_t active_per_token = 0;
  // The same without the input embedding (a lookup, not a matmul): DeepSeek publishes
  // activated parameters this way, Mistral and Qwen with the embedding included.
  int64_t active_without_embedding = 0;

  int64_t of(TensorRole role) const { return by_role[static_cast<size_t>(role)]; }
};

// Counts parameters (quantization scales and metadata are storage, not parameters, and are
// excluded; a packed int4 tensor counts its out x in weights).
ParameterCounts CountParameters(const ModelConfig& config);

// Checks that `parallel` can shard `config`: heads % tp, kv heads dividing or divided by tp,
// intermediate sizes % tp, num_experts % ep, ep > 1 only for MoE models. INVALID_ARGUMENT
// stating the rule broken.
absl::Status ValidateParallelism(const ModelConfig& config, const ParallelConfig& parallel);

struct RankMemoryPlan {
  ParallelConfig parallel;
  ExpertRange experts;  // routed experts on this rank
  // Bytes this rank keeps after loading: its slices of the checkpoint's tensors, except that
  // MLA's kv_b_proj is replaced by the absorbed per-head projections derived from it.
  std::array<uint64_t, kNumTensorRoles> weight_bytes_by_role{};
  uint64_t weight_bytes = 0;
  std::array<uint64_t, kNumTensorRoles> model_bytes_by_role{};  // whole model, for comparison
  uint64_t model_bytes = 0;
  DType kv_dtype = DType::kBF16;
  // KV cache bytes per token on this rank, all layers together. MLA caches the compressed
  // latent (kv_lora_rank + qk_rope_head_dim) per layer on every tp rank; GQA caches k and v of
  // the rank's kv heads (max(1, kv_heads / tp)).
  uint64_t kv_bytes_per_token = 0;
  // The RoPE table the model builds at load ([positions, rotary dim] f32, copied to the device
  // with the weights), for the config's max_position_embeddings (less with --max-model-len).
  int64_t rope_positions = 0;
  uint64_t rope_table_bytes = 0;

  uint64_t KvBytes(int64_t tokens) const { return kv_bytes_per_token * tokens; }
};

// Quantizations the loader applies at load (the worker's and serve's flags of the same names).
struct LoadQuantization {
  // --quantize fp8: the linear weights of a bf16/f16/f32 checkpoint in 128 x 128-block fp8 (the
  // tensors a published FP8 checkpoint quantizes); nothing for a checkpoint already fp8.
  bool fp8 = false;
  // --quantize-lm-head fp8: lm_head (a copy of the embedding table when tied) in 128 x 128-block
  // fp8; a vocab-parallel slice that starts inside a block row has one scale row per row.
  bool fp8_lm_head = false;
};

// The memory plan of `parallel.rank`. Weights are counted as the loader keeps them on a
// backend that multiplies quantized weights: the checkpoint's storage dtype (torch_dtype, fp8
// or packed int4 where quantized, fp32 where the checkpoint keeps fp32), quantization scales
// (and int4 zero points and act-order column orders where present) as f32, then `at_load`'s
// quantizations; the whole-model bytes are the checkpoint's. The KV cache in `kv_dtype`
// (callers usually pass torch_dtype). Errors: those of ParallelConfig::Validate and
// ValidateParallelism; FailedPrecondition where the loader refuses `at_load` (fp8 over int4
// weights, an fp8 copy of an int4 lm_head).
absl::StatusOr<RankMemoryPlan> PlanRankMemory(const ModelConfig& config,
                                              const ParallelConfig& parallel, DType kv_dtype,
                                              const LoadQuantization& at_load = {});

// "46.70 B", "12.9 M", "512" (decimal units, as parameter counts are published).
std::string FormatCount(int64_t count);
// "1.50 GiB", "640.0 MiB", "12 B" (binary units).
std::string FormatBytes(uint64_t bytes);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_PLAN_MODEL_PLAN_H_
