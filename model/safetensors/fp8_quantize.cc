#include "model/safetensors/fp8_quantize.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace expertmesh::model {

absl::Status QuantizeFp8Blocks(std::span<const float> values, int64_t rows, int64_t cols,
                               Fp8BlockSize block, std::span<uint8_t> out,
                               std::span<float> scale_inv) {
  if (rows < 0 || cols < 0 || block.rows < 1 || block.cols < 1) {
    return absl::InvalidArgumentError(absl::StrCat("fp8 quantize: bad shape [", rows, ", ", cols,
                                                   "] or block ", block.rows, "x", block.cols));
  }
  const int64_t grid_rows = (rows + block.rows - 1) / block.rows;
  const int64_t grid_cols = (cols + block.cols - 1) / block.cols;
  if (static_cast<int64_t>(values.size()) != rows * cols ||
      static_cast<int64_t>(out.size()) != rows * cols ||
      static_cast<int64_t>(scale_inv.size()) != grid_rows * grid_cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("fp8 quantize: [", rows, ", ", cols, "] needs ", rows * cols,
                     " values and bytes and ", grid_rows * grid_cols, " scales, got ",
                     values.size(), ", ", out.size(), ", ", scale_inv.size()));
  }
  for (int64_t br = 0; br < grid_rows; ++br) {
    const int64_t r0 = br * block.rows, r1 = std::min(rows, r0 + block.rows);
    for (int64_t bc = 0; bc < grid_cols; ++bc) {
      const int64_t c0 = bc * block.cols, c1 = std::min(cols, c0 + block.cols);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) {
          const float v = values[r * cols + c];
          if (!std::isfinite(v)) {
            return absl::InvalidArgumentError(
                absl::StrCat("fp8 quantize: value [", r, ", ", c, "] is ", v));
          }
          amax = std::max(amax, std::fabs(v));
        }
      }
      const float scale = amax > 0.0f ? amax / kFp8E4M3Max : 1.0f;
      scale_inv[br * grid_cols + bc] = scale;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c)
          out[r * cols + c] = FloatToF8E4M3(values[r * cols + c] / scale);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::model
