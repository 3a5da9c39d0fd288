#include "model/safetensors/int4_quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace expertmesh::model {

absl::Status QuantizeInt4Groups(std::span<const float> values, int64_t rows, int64_t cols,
                                int64_t group, DType scale_dtype, std::span<uint8_t> q,
                                std::span<float> scales) {
  if (rows < 0 || cols < 0 || group <= 0 || cols % group != 0) {
    return absl::InvalidArgumentError(absl::StrCat("int4 quantization: group size ", group,
                                                   " does not divide rows of ", cols, " values"));
  }
  const size_t n = static_cast<size_t>(rows * cols);
  const size_t groups = static_cast<size_t>(rows * (cols / group));
  if (values.size() != n || q.size() != n || scales.size() != groups) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 quantization: [", rows, ", ", cols, "] needs ", n, " values and ", groups,
        " scales, got ", values.size(), ", ", q.size(), " and ", scales.size()));
  }
  if (scale_dtype != DType::kF32 && scale_dtype != DType::kBF16 && scale_dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("int4 quantization: scales cannot be ", std::string(DTypeName(scale_dtype))));
  }
  const float eps = std::numeric_limits<float>::epsilon();
  for (size_t g = 0; g < groups; ++g) {
    const float* x = values.data() + g * group;
    float amax = 0;
    for (int64_t i = 0; i < group; ++i) {
      if (!std::isfinite(x[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("int4 quantization: value ", g * group + i, " is ", x[i]));
      }
      amax = std::max(amax, std::fabs(x[i]));
    }
    float scale = std::max(amax / 7.5f, eps);
    if (scale_dtype == DType::kBF16) scale = Bf16ToFloat(FloatToBf16(scale));
    if (scale_dtype == DType::kF16) scale = F16ToFloat(FloatToF16(scale));
    scales[g] = scale;
    for (int64_t i = 0; i < group; ++i) {
      // std::nearbyint rounds half to even in the default rounding mode, as torch.round does.
      const float r = std::clamp(std::nearbyint(x[i] / scale), -8.0f, 7.0f);
      q[g * group + i] = static_cast<uint8_t>(static_cast<int>(r) + 8);
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::model
