#include "tools/make_model/weight_init.h"

#include <cstring>

#include "absl/strings/match.h"
#include "common/dtype.h"
#include "tools/make_model/prng.h"

namespace expertmesh::make_model {
namespace {

class InitSource : public TensorSource {
 public:
  InitSource(DType dtype, InitRule rule, uint64_t seed) : dtype_(dtype), rule_(rule), rng_(seed) {}

  void Fill(std::span<std::byte> out) override {
    const size_t count = out.size() / DTypeSize(dtype_);
    switch (dtype_) {
      case DType::kF32:
        for (size_t i = 0; i < count; ++i) {
          const float v = Value();
          std::memcpy(out.data() + 4 * i, &v, 4);
        }
        break;
      case DType::kBF16:
        for (size_t i = 0; i < count; ++i) {
          const uint16_t v = FloatToBf16(Value());
          std::memcpy(out.data() + 2 * i, &v, 2);
        }
        break;
      case DType::kF16:
        for (size_t i = 0; i < count; ++i) {
          const uint16_t v = FloatToF16(Value());
          std::memcpy(out.data() + 2 * i, &v, 2);
        }
        break;
      default:
        // MakeModel only asks for floating-point checkpoints; anything else is a programming
        // error caught by the tests. Zero bytes keep the file well-formed.
        std::memset(out.data(), 0, out.size());
        break;
    }
  }

 private:
  float Value() { return rule_.kind == InitKind::kOnes ? 1.0f : rng_.NextNormal() * rule_.std; }

  DType dtype_;
  InitRule rule_;
  Xoshiro256 rng_;
};

}  // namespace

InitRule InitRuleFor(std::string_view name, float init_std) {
  // Every RMSNorm scale in the six architectures is named *norm.weight or *layernorm.weight
  // (input_layernorm, post_attention_layernorm, model.norm, q_norm, k_norm, q_a_layernorm,
  // kv_a_layernorm); HF initialises them to 1.
  if (absl::EndsWith(absl::string_view(name.data(), name.size()), "norm.weight"))
    return {InitKind::kOnes, 1.0f};
  // DeepSeek-V3's routing bias only shifts which experts win; real checkpoints hold values of
  // a few hundredths. Small values keep routing sensible and exercise the bias path.
  if (absl::EndsWith(absl::string_view(name.data(), name.size()), "e_score_correction_bias"))
    return {InitKind::kNormal, 0.01f};
  return {InitKind::kNormal, init_std};
}

std::unique_ptr<TensorSource> MakeInitSource(const TensorToWrite& tensor, uint64_t seed,
                                             float init_std) {
  return std::make_unique<InitSource>(tensor.dtype, InitRuleFor(tensor.name, init_std),
                                      DeriveSeed(seed, tensor.name));
}

}  // namespace expertmesh::make_model
