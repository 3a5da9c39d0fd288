#include "tools/make_model/model_shape.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace expertmesh::make_model {
namespace {

ModelShape Tiny() {
  return {.hidden_size = 64,
          .num_layers = 2,
          .num_heads = 4,
          .num_kv_heads = 2,
          .head_dim = 16,
          .intermediate_size = 128,
          .num_experts = 8,
          .num_experts_per_tok = 2,
          .moe_intermediate_size = 32,
          .num_shared_experts = 1,
          .bpe_vocab_size = 2048,
          .max_position_embeddings = 4096,
          .kv_lora_rank = 32,
          .q_lora_rank = 48,
          .qk_nope_head_dim = 16,
          .qk_rope_head_dim = 8,
          .v_head_dim = 16,
          .n_group = 4,
          .topk_group = 2,
          .first_k_dense = 1};
}

ModelShape Small() {
  return {.hidden_size = 256,
          .num_layers = 4,
          .num_heads = 8,
          .num_kv_heads = 4,
          .head_dim = 32,
          .intermediate_size = 768,
          .num_experts = 16,
          .num_experts_per_tok = 4,
          .moe_intermediate_size = 128,
          .num_shared_experts = 1,
          .bpe_vocab_size = 8192,
          .max_position_embeddings = 8192,
          .kv_lora_rank = 64,
          .q_lora_rank = 96,
          .qk_nope_head_dim = 32,
          .qk_rope_head_dim = 16,
          .v_head_dim = 32,
          .n_group = 4,
          .topk_group = 2,
          .first_k_dense = 1};
}

ModelShape Medium() {
  return {.hidden_size = 1024,
          .num_layers = 8,
          .num_heads = 16,
          .num_kv_heads = 4,
          .head_dim = 64,
          .intermediate_size = 2816,
          .num_experts = 32,
          .num_experts_per_tok = 4,
          .moe_intermediate_size = 512,
          .num_shared_experts = 1,
          .bpe_vocab_size = 16384,
          .max_position_embeddings = 16384,
          .kv_lora_rank = 256,
          .q_lora_rank = 384,
          .qk_nope_head_dim = 64,
          .qk_rope_head_dim = 32,
          .v_head_dim = 64,
          .n_group = 8,
          .topk_group = 4,
          .first_k_dense = 1};
}

// Qwen3-30B-A3B has hidden 2048, 48 layers, 32 heads / 4 kv heads of 128, 128 experts of width
// 768, top-8. Keeping hidden, heads and top-8 but fewer layers, experts and a narrower expert
// gives the same per-token compute shape in ~3.5 GB of bf16.
ModelShape Large() {
  return {.hidden_size = 2048,
          .num_layers = 12,
          .num_heads = 32,
          .num_kv_heads = 4,
          .head_dim = 128,
          .intermediate_size = 6144,
          .num_experts = 48,
          .num_experts_per_tok = 8,
          .moe_intermediate_size = 384,
          .num_shared_experts = 1,
          .bpe_vocab_size = 32768,
          .max_position_embeddings = 32768,
          .kv_lora_rank = 512,
          .q_lora_rank = 768,
          .qk_nope_head_dim = 128,
          .qk_rope_head_dim = 64,
          .v_head_dim = 128,
          .n_group = 8,
          .topk_group = 4,
          .first_k_dense = 1};
}

void Set(int64_t& field, const std::optional<int64_t>& value) {
  if (value.has_value()) field = *value;
}

// Rounds `field` up to a multiple of `multiple` unless the user set it.
void RoundUp(int64_t& field, const std::optional<int64_t>& set_by_user, int64_t multiple) {
  if (!set_by_user.has_value()) field = (field + multiple - 1) / multiple * multiple;
}

}  // namespace

const std::vector<std::string>& PresetNames() {
  static const std::vector<std::string> names = {"tiny", "small", "medium", "large"};
  return names;
}

absl::StatusOr<ModelShape> PresetShape(std::string_view name) {
  if (name == "tiny") return Tiny();
  if (name == "small") return Small();
  if (name == "medium") return Medium();
  if (name == "large") return Large();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown size preset '", std::string(name),
                   "' (expected one of: ", absl::StrJoin(PresetNames(), ", "), ")"));
}

absl::StatusOr<ModelShape> ApplyOverrides(ModelShape s, const ShapeOverrides& o) {
  Set(s.hidden_size, o.hidden_size);
  Set(s.num_layers, o.num_layers);
  Set(s.num_heads, o.num_heads);
  Set(s.num_kv_heads, o.num_kv_heads);
  Set(s.head_dim, o.head_dim);
  Set(s.intermediate_size, o.intermediate_size);
  Set(s.num_experts, o.num_experts);
  Set(s.num_experts_per_tok, o.num_experts_per_tok);
  Set(s.moe_intermediate_size, o.moe_intermediate_size);
  Set(s.num_shared_experts, o.num_shared_experts);
  Set(s.bpe_vocab_size, o.bpe_vocab_size);
  Set(s.max_position_embeddings, o.max_position_embeddings);
  Set(s.kv_lora_rank, o.kv_lora_rank);
  Set(s.q_lora_rank, o.q_lora_rank);
  Set(s.qk_nope_head_dim, o.qk_nope_head_dim);
  Set(s.qk_rope_head_dim, o.qk_rope_head_dim);
  Set(s.v_head_dim, o.v_head_dim);
  Set(s.n_group, o.n_group);
  Set(s.topk_group, o.topk_group);
  Set(s.first_k_dense, o.first_k_dense);

  auto positive = [](const char* name, int64_t v) -> absl::Status {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(name, " must be positive, got ", v));
    return absl::OkStatus();
  };
  for (auto [name, v] : {std::pair{"hidden size", s.hidden_size},
                         {"layers", s.num_layers},
                         {"heads", s.num_heads},
                         {"kv heads", s.num_kv_heads},
                         {"head dim", s.head_dim},
                         {"intermediate size", s.intermediate_size},
                         {"experts", s.num_experts},
                         {"top-k", s.num_experts_per_tok},
                         {"moe intermediate size", s.moe_intermediate_size},
                         {"max positions", s.max_position_embeddings},
                         {"kv lora rank", s.kv_lora_rank},
                         {"q lora rank", s.q_lora_rank},
                         {"qk nope head dim", s.qk_nope_head_dim},
                         {"qk rope head dim", s.qk_rope_head_dim},
                         {"v head dim", s.v_head_dim},
                         {"expert groups", s.n_group},
                         {"top-k groups", s.topk_group}}) {
    if (absl::Status st = positive(name, v); !st.ok()) return st;
  }
  if (s.num_shared_experts < 0 || s.first_k_dense < 0) {
    return absl::InvalidArgumentError("shared experts and first dense layers cannot be negative");
  }
  if (s.bpe_vocab_size < 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab size ", s.bpe_vocab_size, " is below the 256 byte tokens of a byte-level BPE"));
  }
  if (s.num_heads % s.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv heads (", s.num_kv_heads, ") must divide heads (", s.num_heads, ")"));
  }
  if (s.num_experts_per_tok > s.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "top-k (", s.num_experts_per_tok, ") exceeds the number of experts (", s.num_experts, ")"));
  }
  if (s.qk_rope_head_dim % 2 != 0) {
    return absl::InvalidArgumentError("qk rope head dim must be even");
  }
  return s;
}

ModelShape Int4CompatibleShape(ModelShape s, const ShapeOverrides& o, int64_t group,
                               bool experts_only) {
  // Every routed expert reads hidden (gate/up) or its own width (down).
  RoundUp(s.hidden_size, o.hidden_size, group);
  RoundUp(s.moe_intermediate_size, o.moe_intermediate_size, group);
  if (experts_only) return s;
  RoundUp(s.intermediate_size, o.intermediate_size, group);
  RoundUp(s.kv_lora_rank, o.kv_lora_rank, group);  // kv_b_proj's input
  RoundUp(s.q_lora_rank, o.q_lora_rank, group);    // q_b_proj's input
  // o_proj reads heads x head_dim (Qwen3-MoE) or heads x v_head_dim (MLA); the other
  // architectures derive head_dim from hidden, which is already a multiple.
  const int64_t per_head = group / std::gcd(group, s.num_heads);
  RoundUp(s.head_dim, o.head_dim, per_head);
  RoundUp(s.v_head_dim, o.v_head_dim, per_head);
  return s;
}

}  // namespace expertmesh::make_model
