// Dequantization of DeepSeek-style block-quantized fp8 weights: `weight` [R, C] in F8_E4M3 and
// `weight_scale_inv` [ceil(R / block_rows), ceil(C / block_cols)] in F32, where
// value[r][c] = fp8(weight[r][c]) * scale_inv[r / block_rows][c / block_cols].
//
// Errors are INVALID_ARGUMENT naming the tensors: wrong dtypes, non-2-D shapes, a scale shape
// that does not match the block size, a row range outside the weight, an output of the wrong
// size or an unsupported output dtype.
#ifndef EXPERTMESH_MODEL_SAFETENSORS_FP8_DEQUANT_H_
#define EXPERTMESH_MODEL_SAFETENSORS_FP8_DEQUANT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/safetensors/safetensors_file.h"

namespace expertmesh::model {

struct Fp8BlockSize {
  int64_t rows = 128;
  int64_t cols = 128;
};

// Dequantizes rows [row_start, row_start + row_count) into `out`, row-major
// [row_count, C], in `out_dtype` (kF32 or kBF16, rounded to nearest even).
// `out.size()` must be row_count * C * DTypeSize(out_dtype).
absl::Status DequantizeFp8Rows(const TensorView& weight, const TensorView& scale_inv,
                               Fp8BlockSize block, int64_t row_start, int64_t row_count,
                               DType out_dtype, std::span<std::byte> out);

// The whole weight as fp32, [R * C].
absl::StatusOr<std::vector<float>> DequantizeFp8(const TensorView& weight,
                                                 const TensorView& scale_inv, Fp8BlockSize block);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_SAFETENSORS_FP8_DEQUANT_H_
