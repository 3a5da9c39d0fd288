// How make-model initialises each tensor, decided from its Hugging Face name: RMSNorm scales are
// 1, DeepSeek-V3's e_score_correction_bias gets small values, everything else is normal with
// std `init_std` (transformers' initializer_range, 0.02). Values depend only on (seed, name).
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_WEIGHT_INIT_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_WEIGHT_INIT_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "tools/make_model/safetensors_writer.h"

namespace expertmesh::make_model {

enum class InitKind { kOnes, kNormal };

struct InitRule {
  InitKind kind = InitKind::kNormal;
  float std = 0.02f;
};

// The rule for a tensor name; `init_std` is the standard deviation of ordinary weights.
InitRule InitRuleFor(std::string_view name, float init_std);

// A source producing `tensor` initialised by InitRuleFor(tensor.name, init_std), from a
// generator seeded with DeriveSeed(seed, tensor.name). Supports F32, BF16 and F16.
std::unique_ptr<TensorSource> MakeInitSource(const TensorToWrite& tensor, uint64_t seed,
                                             float init_std);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_WEIGHT_INIT_H_
