#include "kernels/rope_cache.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace expertmesh::kernels {
namespace {

double YarnGetMscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// base ** (i / dim) for i = 0, 2, 4, ...: torch evaluates the exponent and the power in fp32.
std::vector<float> PosFreqs(double theta, int dim) {
  std::vector<float> out(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    out[i] = static_cast<float>(
        std::pow(static_cast<double>(static_cast<float>(theta)), static_cast<double>(exponent)));
  }
  return out;
}

// YaRN's correction dimension for a number of rotations (HF find_correction_dim).
double CorrectionDim(double rotations, int dim, double base, double max_pos) {
  return (dim * std::log(max_pos / (rotations * 2.0 * std::numbers::pi))) / (2.0 * std::log(base));
}

}  // namespace

absl::StatusOr<std::vector<float>> RopeInverseFrequencies(const RopeScaling& s, int dim) {
  if (dim <= 0 || dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: rotary_dim ", dim, " must be positive and even"));
  }
  if (!(s.theta > 0.0) || !(s.factor > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: rope_theta ", s.theta, " and factor ", s.factor, " must be positive"));
  }
  const bool needs_orig = s.type == RopeScalingType::kYarn || s.type == RopeScalingType::kLlama3;
  if (needs_orig && s.original_max_position_embeddings <= 0) {
    return absl::InvalidArgumentError(
        "rope: yarn and llama3 scaling need original_max_position_embeddings");
  }
  const std::vector<float> pos = PosFreqs(s.theta, dim);
  const int half = dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = 1.0f / pos[i];
  switch (s.type) {
    case RopeScalingType::kDefault:
      break;
    case RopeScalingType::kLinear:
      for (float& f : inv) f = f / static_cast<float>(s.factor);
      break;
    case RopeScalingType::kYarn: {
      const double orig = static_cast<double>(s.original_max_position_embeddings);
      double low = CorrectionDim(s.beta_fast, dim, s.theta, orig);
      double high = CorrectionDim(s.beta_slow, dim, s.theta, orig);
      if (s.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;  // HF: prevent a singular ramp
      const float factor = static_cast<float>(s.factor);
      for (int i = 0; i < half; ++i) {
        float ramp =
            (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
        ramp = std::clamp(ramp, 0.0f, 1.0f);
        const float extrapolation_factor = 1.0f - ramp;
        const float extrapolation = 1.0f / pos[i];
        const float interpolation = 1.0f / (factor * pos[i]);
        inv[i] =
            interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
      }
      break;
    }
    case RopeScalingType::kLlama3: {
      const double old_len = static_cast<double>(s.original_max_position_embeddings);
      const double low_wavelen = old_len / s.low_freq_factor;
      const double high_wavelen = old_len / s.high_freq_factor;
      const float factor = static_cast<float>(s.factor);
      for (int i = 0; i < half; ++i) {
        const float f = inv[i];
        const float wavelen = 2.0f * static_cast<float>(std::numbers::pi) / f;
        float scaled = wavelen > low_wavelen ? f / factor : f;
        const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        if (medium) {
          const float smooth = static_cast<float>((old_len / wavelen - s.low_freq_factor) /
                                                  (s.high_freq_factor - s.low_freq_factor));
          scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        inv[i] = scaled;
      }
      break;
    }
  }
  return inv;
}

double RopeAttentionScaling(const RopeScaling& s) {
  if (s.type != RopeScalingType::kYarn) return 1.0;
  if (s.attention_factor.has_value()) return *s.attention_factor;
  if (s.mscale != 0.0 && s.mscale_all_dim != 0.0) {
    return YarnGetMscale(s.factor, s.mscale) / YarnGetMscale(s.factor, s.mscale_all_dim);
  }
  return YarnGetMscale(s.factor, 1.0);
}

double DeepseekSoftmaxScaleMultiplier(const RopeScaling& s) {
  if (s.type != RopeScalingType::kYarn || s.mscale_all_dim == 0.0) return 1.0;
  const double m = YarnGetMscale(s.factor, s.mscale_all_dim);
  return m * m;
}

absl::StatusOr<Tensor> BuildRopeCache(const RopeScaling& scaling, int rotary_dim,
                                      int64_t max_positions) {
  if (max_positions <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: max_positions ", max_positions, " must be positive"));
  }
  absl::StatusOr<std::vector<float>> inv = RopeInverseFrequencies(scaling, rotary_dim);
  if (!inv.ok()) return inv.status();
  absl::StatusOr<Tensor> table = Tensor::Empty(DType::kF32, {max_positions, rotary_dim});
  if (!table.ok()) return table.status();
  const float attn = static_cast<float>(RopeAttentionScaling(scaling));
  const int half = rotary_dim / 2;
  float* out = table->data<float>();
  for (int64_t p = 0; p < max_positions; ++p) {
    float* row = out + p * rotary_dim;
    for (int i = 0; i < half; ++i) {
      const float angle = (*inv)[i] * static_cast<float>(p);  // fp32 product, as HF's matmul
      row[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * attn;
      row[half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * attn;
    }
  }
  return table;
}

}  // namespace expertmesh::kernels
