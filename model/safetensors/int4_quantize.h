// Symmetric int4 quantization in groups along each row, the W4A16 scheme of llm-compressor
// (compressed-tensors `pack-quantized`, strategy "group", symmetric, minmax observer): for each
// group of `group` consecutive values of a row,
//   scale = max(amax / 7.5, float32 epsilon), rounded to `scale_dtype` (the dtype a checkpoint
//           stores it in; compressed-tensors' calculate_qparams: amax / ((q_max - q_min) / 2)),
//   q     = clamp(round_half_even(value / scale), -8, 7),
// stored as q + 8 (0..15, compressed-tensors' packing offset and kernels::kQ4SymmetricZero), so
// that dequantizing gives (stored - 8) * scale. amax / 7.5 rather than amax / 7: the group's
// largest magnitude lands on -8 when negative and clamps to 7 (an error of half a step) when
// positive, using all 16 levels. `expertmesh make-model --dtype int4-ct` writes checkpoints
// with it; `--quantize int4` quantizes a bf16 checkpoint's expert weights at load with it.
#ifndef EXPERTMESH_MODEL_SAFETENSORS_INT4_QUANTIZE_H_
#define EXPERTMESH_MODEL_SAFETENSORS_INT4_QUANTIZE_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace expertmesh::model {

// The group size --quantize int4 uses (issue 17; Qwen's and llm-compressor's usual W4A16).
inline constexpr int64_t kInt4QuantizeGroup = 128;

// The group --quantize int4 gives a row of `cols` values: kInt4QuantizeGroup, or for rows it does
// not divide (narrow test models) the largest of 64 and 32 that does; 0 when none does.
inline int64_t Int4QuantizeGroupFor(int64_t cols) {
  for (int64_t group : {kInt4QuantizeGroup, int64_t{64}, int64_t{32}}) {
    if (cols % group == 0) return group;
  }
  return 0;
}

// Quantizes `values` ([rows, cols] row-major) into `q` ([rows, cols], one value 0..15 per byte)
// and `scales` ([rows, cols / group] f32, each exactly a `scale_dtype` number).
// InvalidArgument for sizes that do not match, a group that does not divide cols, a
// `scale_dtype` other than F32, BF16 or F16, or a non-finite value.
absl::Status QuantizeInt4Groups(std::span<const float> values, int64_t rows, int64_t cols,
                                int64_t group, DType scale_dtype, std::span<uint8_t> q,
                                std::span<float> scales);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_SAFETENSORS_INT4_QUANTIZE_H_
