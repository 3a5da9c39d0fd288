// Block quantization to fp8 e4m3, the format of DeepSeek-V3's and Qwen3's FP8 checkpoints:
// for each block of `block.rows` x `block.cols` values (partial at the edges),
//   scale_inv = amax / 448 (1 for a block of zeros),  stored[r][c] = e4m3(value / scale_inv)
// rounded to nearest even, so that dequantizing (fp8_dequant.h: stored * scale_inv) gives the
// value back within e4m3's 3-bit mantissa. `expertmesh make-model --dtype fp8` writes checkpoints
// with it; quantizing a bf16 model at load must use the same function.
#ifndef EXPERTMESH_MODEL_SAFETENSORS_FP8_QUANTIZE_H_
#define EXPERTMESH_MODEL_SAFETENSORS_FP8_QUANTIZE_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "model/safetensors/fp8_dequant.h"

namespace expertmesh::model {

// The largest finite e4m3 magnitude: a block's largest value maps to it.
inline constexpr float kFp8E4M3Max = 448.0f;

// Quantizes `values` ([rows, cols] row-major) into `out` ([rows, cols] e4m3 bytes) and
// `scale_inv` ([ceil(rows / block.rows), ceil(cols / block.cols)] row-major f32).
// InvalidArgument for sizes that do not match, a non-positive block, or a non-finite value.
absl::Status QuantizeFp8Blocks(std::span<const float> values, int64_t rows, int64_t cols,
                               Fp8BlockSize block, std::span<uint8_t> out,
                               std::span<float> scale_inv);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_SAFETENSORS_FP8_QUANTIZE_H_
