// What each checkpoint tensor is for, and so how it is counted and sharded. Derived from the
// Hugging Face names that ExpectedTensors produces.
#ifndef EXPERTMESH_MODEL_PLAN_TENSOR_ROLE_H_
#define EXPERTMESH_MODEL_PLAN_TENSOR_ROLE_H_

#include <cstdint>
#include <string_view>

namespace expertmesh::model {

enum class TensorRole {
  kEmbedding,        // vocab-parallel over tp
  kLmHead,           // vocab-parallel over tp
  kAttentionHeads,   // split by attention heads over tp (q, o; MLA q_b/kv_b/q_proj)
  kAttentionKv,      // GQA k/v: split by kv heads, replicated when tp > kv heads
  kAttentionShared,  // replicated: MLA low-rank down projections and their norms, q/k norms
  kDenseMlp,         // split by intermediate over tp
  kRoutedExpert,     // on the owning ep rank, intermediate split over tp
  kSharedExpert,     // split by intermediate over tp
  kRouter,           // replicated: router weight, correction bias, shared expert gate
  kNorm,             // replicated
};

inline constexpr int kNumTensorRoles = 10;

std::string_view TensorRoleName(TensorRole role);

struct ClassifiedTensor {
  TensorRole role;
  int64_t expert = -1;  // for kRoutedExpert: the expert id
};

// Classifies a tensor name of a supported architecture.
ClassifiedTensor ClassifyTensor(std::string_view name);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_PLAN_TENSOR_ROLE_H_
