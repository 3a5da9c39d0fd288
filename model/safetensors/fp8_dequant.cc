#include "model/safetensors/fp8_dequant.h"

#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace expertmesh::model {
namespace {

absl::Status Invalid(const TensorView& weight, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("fp8 weight '", weight.name, "': ", what));
}

// All 256 e4m3fn values, so the inner loop is a table lookup.
const std::array<float, 256>& Fp8Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i)
      t[static_cast<size_t>(i)] = F8E4M3ToFloat(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

}  // namespace

absl::Status DequantizeFp8Rows(const TensorView& weight, const TensorView& scale_inv,
                               Fp8BlockSize block, int64_t row_start, int64_t row_count,
                               DType out_dtype, std::span<std::byte> out) {
  if (weight.dtype != DType::kF8E4M3 || weight.shape.size() != 2) {
    return Invalid(weight, "expected a 2-D F8_E4M3 tensor");
  }
  if (scale_inv.dtype != DType::kF32 || scale_inv.shape.size() != 2) {
    return Invalid(weight, absl::StrCat("scale '", scale_inv.name, "' is not a 2-D F32 tensor"));
  }
  if (block.rows <= 0 || block.cols <= 0) return Invalid(weight, "block size must be positive");
  const int64_t rows = weight.shape[0];
  const int64_t cols = weight.shape[1];
  const int64_t scale_rows = (rows + block.rows - 1) / block.rows;
  const int64_t scale_cols = (cols + block.cols - 1) / block.cols;
  if (scale_inv.shape[0] != scale_rows || scale_inv.shape[1] != scale_cols) {
    return Invalid(
        weight, absl::StrCat("scale '", scale_inv.name, "' has shape [", scale_inv.shape[0], ", ",
                             scale_inv.shape[1], "], expected [", scale_rows, ", ", scale_cols,
                             "] for blocks of ", block.rows, "x", block.cols));
  }
  if (row_start < 0 || row_count < 0 || row_start > rows || row_count > rows - row_start) {
    return Invalid(weight, absl::StrCat("rows [", row_start, ", ", row_start + row_count,
                                        ") outside [0, ", rows, ")"));
  }
  if (out_dtype != DType::kF32 && out_dtype != DType::kBF16) {
    return Invalid(weight, "output dtype must be F32 or BF16");
  }
  const size_t needed = static_cast<size_t>(row_count * cols) * DTypeSize(out_dtype);
  if (out.size() != needed) {
    return Invalid(weight,
                   absl::StrCat("output buffer has ", out.size(), " bytes, needs ", needed));
  }
  const std::array<float, 256>& table = Fp8Table();
  const auto* q = reinterpret_cast<const uint8_t*>(weight.data.data());
  std::vector<float> scale_row(static_cast<size_t>(scale_cols));
  for (int64_t r = 0; r < row_count; ++r) {
    const int64_t src_row = row_start + r;
    // Scale data may be unaligned inside the mapping: memcpy, not a float* cast.
    std::memcpy(scale_row.data(),
                scale_inv.data.data() + (src_row / block.rows) * scale_cols * sizeof(float),
                static_cast<size_t>(scale_cols) * sizeof(float));
    const uint8_t* src = q + src_row * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float value = table[src[c]] * scale_row[static_cast<size_t>(c / block.cols)];
      const size_t index = static_cast<size_t>(r * cols + c);
      if (out_dtype == DType::kF32) {
        std::memcpy(out.data() + index * 4, &value, 4);
      } else {
        const uint16_t bits = FloatToBf16(value);
        std::memcpy(out.data() + index * 2, &bits, 2);
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DequantizeFp8(const TensorView& weight,
                                                 const TensorView& scale_inv, Fp8BlockSize block) {
  if (weight.shape.size() != 2) return Invalid(weight, "expected a 2-D F8_E4M3 tensor");
  std::vector<float> out(static_cast<size_t>(weight.shape[0] * weight.shape[1]));
  absl::Status status = DequantizeFp8Rows(
      weight, scale_inv, block, 0, weight.shape[0], DType::kF32,
      std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size() * sizeof(float)));
  if (!status.ok()) return status;
  return out;
}

}  // namespace expertmesh::model
