// Size presets and dimension overrides for make-model, in architecture-neutral terms. The
// config writer (model_config_writer.h) maps them to each architecture's config.json keys.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_SHAPE_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_SHAPE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::make_model {

struct ModelShape {
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;           // Qwen3-MoE only; the others use hidden_size / num_heads
  int64_t intermediate_size = 0;  // dense MLP width
  int64_t num_experts = 0;        // routed experts (ignored by Llama)
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;  // width of one routed expert
  int64_t num_shared_experts = 0;     // DeepSeek shared experts; Qwen2-MoE: 0 drops the shared one
  int64_t bpe_vocab_size = 0;         // BPE tokens to train (bytes included)
  int64_t max_position_embeddings = 0;
  // DeepSeek multi-head latent attention.
  int64_t kv_lora_rank = 0;
  int64_t q_lora_rank = 0;  // DeepSeek-V3 only; DeepSeek-V2 is written without (as V2-Lite)
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  // Group-limited routing (DeepSeek) and leading dense layers.
  int64_t n_group = 0;
  int64_t topk_group = 0;
  int64_t first_k_dense = 0;
};

// A value for any subset of ModelShape's fields; set ones replace the preset's.
struct ShapeOverrides {
  std::optional<int64_t> hidden_size, num_layers, num_heads, num_kv_heads, head_dim,
      intermediate_size, num_experts, num_experts_per_tok, moe_intermediate_size,
      num_shared_experts, bpe_vocab_size, max_position_embeddings, kv_lora_rank, q_lora_rank,
      qk_nope_head_dim, qk_rope_head_dim, v_head_dim, n_group, topk_group, first_k_dense;
};

// Preset names in increasing size: tiny (~1 MB, unit tests), small (~40 MB), medium (~1 GB),
// large (a Qwen3-30B-A3B shape scaled to ~3.5 GB in bf16, for benchmarks).
const std::vector<std::string>& PresetNames();

// The preset called `name`. INVALID_ARGUMENT listing the valid names for an unknown one.
absl::StatusOr<ModelShape> PresetShape(std::string_view name);

// `shape` with `overrides` applied. INVALID_ARGUMENT when a resulting field is out of range
// (non-positive sizes, kv heads not dividing heads, top-k above the expert count, ...).
absl::StatusOr<ModelShape> ApplyOverrides(ModelShape shape, const ShapeOverrides& overrides);

// `shape` with the widths that int4-quantized Linear layers read rounded up to multiples of
// `group`, so that every row splits into whole groups: hidden and routed-expert widths always,
// and unless `experts_only` the dense MLP width, the MLA ranks, and the attention output widths
// (heads x head_dim, heads x v_head_dim). The presets' small widths (tiny: hidden 64, experts 32
// wide) are below the published group sizes; fields set in `overrides` are left as given (the
// caller reports those that do not divide). REQUIRES: group > 0 and a valid `shape`.
ModelShape Int4CompatibleShape(ModelShape shape, const ShapeOverrides& overrides, int64_t group,
                               bool experts_only);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_SHAPE_H_
