// Rotary-embedding frequency tables, computed once per model on the host exactly as Hugging Face
// transformers computes them (modeling_rope_utils: default, linear, yarn, llama3), in fp32.
#ifndef EXPERTMESH_KERNELS_ROPE_CACHE_H_
#define EXPERTMESH_KERNELS_ROPE_CACHE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace expertmesh::kernels {

enum class RopeScalingType : uint8_t { kDefault, kLinear, kYarn, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kDefault;
  double theta = 10000.0;  // rope_theta
  double factor = 1.0;     // linear / yarn / llama3
  // YaRN (DeepSeek-V2/V3, Qwen with yarn).
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;          // 0 = absent
  double mscale_all_dim = 0.0;  // 0 = absent
  std::optional<double> attention_factor;
  bool truncate = true;
  // YaRN and llama3: the pretraining context (rope_scaling.original_max_position_embeddings).
  int64_t original_max_position_embeddings = 0;
  // llama3.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
};

// The rotary_dim/2 inverse frequencies, in fp32 as HF computes them.
// Errors: InvalidArgument for an odd or non-positive rotary_dim, theta <= 0, factor <= 0, or a
// yarn/llama3 config without original_max_position_embeddings.
absl::StatusOr<std::vector<float>> RopeInverseFrequencies(const RopeScaling& scaling,
                                                          int rotary_dim);

// The factor HF multiplies cos and sin by (YaRN's attention_factor; 1 for the others).
double RopeAttentionScaling(const RopeScaling& scaling);

// DeepSeek-V2/V3 multiply the softmax scale by yarn_get_mscale(factor, mscale_all_dim)^2 when
// rope_scaling has mscale_all_dim; 1 otherwise.
double DeepseekSoftmaxScaleMultiplier(const RopeScaling& scaling);

// The table Backend::Rope reads: [max_positions, rotary_dim] f32 on the CPU; row p holds
// cos(p * inv_freq[i]) * s for i < r/2, then sin(p * inv_freq[i]) * s, with the angle computed
// in fp32 as HF does (s = RopeAttentionScaling).
absl::StatusOr<Tensor> BuildRopeCache(const RopeScaling& scaling, int rotary_dim,
                                      int64_t max_positions);

}  // namespace expertmesh::kernels

#endif  // EXPERTMESH_KERNELS_ROPE_CACHE_H_
