#include "model/plan/tensor_role.h"

#include <string>

namespace expertmesh::model {
namespace {

bool Has(std::string_view name, std::string_view part) {
  return name.find(part) != std::string_view::npos;
}

}  // namespace

std::string_view TensorRoleName(TensorRole role) {
  switch (role) {
    case TensorRole::kEmbedding:
      return "embedding";
    case TensorRole::kLmHead:
      return "lm_head";
    case TensorRole::kAttentionHeads:
      return "attention (per head)";
    case TensorRole::kAttentionKv:
      return "attention (kv heads)";
    case TensorRole::kAttentionShared:
      return "attention (replicated)";
    case TensorRole::kDenseMlp:
      return "dense mlp";
    case TensorRole::kRoutedExpert:
      return "routed experts";
    case TensorRole::kSharedExpert:
      return "shared experts";
    case TensorRole::kRouter:
      return "router";
    case TensorRole::kNorm:
      return "norms";
  }
  return "unknown";
}

ClassifiedTensor ClassifyTensor(std::string_view name) {
  ClassifiedTensor out{TensorRole::kNorm};
  if (name == "model.embed_tokens.weight") {
    out.role = TensorRole::kEmbedding;
  } else if (name.starts_with("lm_head.")) {
    out.role = TensorRole::kLmHead;  // its weight, or an int4 lm_head's packed tensors
  } else if (Has(name, ".self_attn.")) {
    if (Has(name, ".k_proj.") || Has(name, ".v_proj.")) {
      out.role = TensorRole::kAttentionKv;
    } else if (Has(name, ".q_a_proj.") || Has(name, ".kv_a_proj_with_mqa.") ||
               Has(name, "layernorm.") || Has(name, ".q_norm.") || Has(name, ".k_norm.")) {
      out.role = TensorRole::kAttentionShared;
    } else {
      out.role = TensorRole::kAttentionHeads;  // q_proj, o_proj, q_b_proj, kv_b_proj
    }
  } else if (Has(name, ".experts.")) {
    out.role = TensorRole::kRoutedExpert;
    const size_t at = name.find(".experts.") + 9;
    int64_t expert = 0;
    for (size_t i = at; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
      expert = expert * 10 + (name[i] - '0');
    }
    out.expert = expert;
  } else if (Has(name, ".shared_expert_gate.") || Has(name, ".gate.")) {
    out.role = TensorRole::kRouter;  // mlp.gate / block_sparse_moe.gate / shared_expert_gate
  } else if (Has(name, ".shared_expert.") || Has(name, ".shared_experts.")) {
    out.role = TensorRole::kSharedExpert;
  } else if (Has(name, ".mlp.")) {
    out.role = TensorRole::kDenseMlp;
  } else {
    out.role = TensorRole::kNorm;  // input/post_attention layernorm, model.norm
  }
  return out;
}

}  // namespace expertmesh::model
