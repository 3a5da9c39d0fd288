// Int4 weights as published, read into the runtime's form: a window of rows and columns of a
// compressed-tensors `pack-quantized` or GPTQ Linear, unpacked from the checkpoint's packing
// (eight values per int32, along rows or, in GPTQ, down columns), with its group scales, zero
// points and (GPTQ act-order) column order; then packed into kernels' kQ4 layout
// (kernels/q4_layout.h) with kernels::BlockScales, or dequantized for backends without q4
// weights and for weights derived at load.
//
//  - compressed-tensors: weight_packed I32 [out, in / 8] (value j of a word at bits 4j, stored
//    as the signed value + 8), weight_scale [out, in / group] (any float dtype), weight_shape
//    [2] = [out, in]. q is the stored nibble, the zero point 8.
//  - GPTQ (AutoGPTQ's QuantLinear): qweight I32 [in / 8, out] (8 consecutive input rows per
//    word), qzeros I32 [in / group, out / 8] (8 consecutive output columns per word; one less
//    than the real zero point in checkpoint_format "gptq"), scales [in / group, out], g_idx I32
//    [in] (the group of each input feature; optional when trivial). With a non-trivial g_idx
//    (desc_act) the columns are sorted by group (stably), so each group is contiguous again, and
//    the column order says which input feature each column multiplies.
// Every error names the checkpoint directory, the tensor and what is wrong.
#ifndef EXPERTMESH_WORKER_MODELS_Q4_WINDOW_H_
#define EXPERTMESH_WORKER_MODELS_Q4_WINDOW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "model/safetensors/checkpoint.h"

namespace expertmesh::models {

struct Q4Window {
  std::string name;  // the Linear's weight name, "<module>.weight", for errors
  int64_t rows = 0, cols = 0;
  int64_t group_size = 0;
  std::vector<uint8_t> q;  // [rows, cols] values 0..15
  // [rows, groups]: grid column k is the checkpoint's group first_group + k; the window's first
  // column is col_offset columns into that group.
  int64_t groups = 0;
  int64_t first_group = 0;
  int64_t col_offset = 0;
  std::vector<float> scales;
  std::vector<float> zeros;  // empty: every zero point is 8 (symmetric)
  // Column j multiplies input feature column_order[j]; empty: feature (first column + j).
  std::vector<int32_t> column_order;
};

// Rows [row_begin, row_begin + rows) and columns [col_begin, col_begin + cols) of the int4
// Linear `linear` (format kInt4CompressedTensors or kInt4Gptq). Columns are in the kernels'
// order: a window of an act-order weight must span all its columns (Unimplemented otherwise:
// a tensor-parallel cut through shuffled input features). InvalidArgument for a missing or
// malformed tensor (missing weight_shape, a weight_shape that disagrees with the config, a
// group size that does not divide the row, a g_idx out of range or with uneven groups, scales
// of the wrong shape or not finite, a zero point out of range, a non-zero GPTQ bias where the
// architecture has none).
absl::StatusOr<Q4Window> ReadQ4Window(const model::Checkpoint& checkpoint,
                                      const model::Int4Quantization& quantization,
                                      const model::LinearSpec& linear, int64_t row_begin,
                                      int64_t rows, int64_t col_begin, int64_t cols);

// Windows of several Linears with the same columns, stacked by rows (a fused gate | up).
// Unimplemented when their column orders differ.
absl::StatusOr<Q4Window> ConcatQ4Rows(std::vector<Q4Window> parts);

// Appends rows that multiply to zero until the window has `total_rows` (>= rows): values at the
// zero point, scale 0 (a vocab-parallel lm_head's padding rows, whose logits are dropped).
void PadQ4Rows(Q4Window& window, int64_t total_rows);

// The window as a kQ4 tensor [rows, cols] with its BlockScales (block_rows 1, block_cols the
// group size). InvalidArgument unless the columns start and end on multiples of 32 (a kernel
// unit never straddles two groups).
absl::StatusOr<kernels::Tensor> PackQ4Window(const Q4Window& window);

// The dequantized values (q - zero) * scale, computed in fp32, [rows, cols] row-major with the
// columns in input-feature order (an act-order window is put back in place), written as
// `dtype` (kF32 or kBF16, rounded to nearest even) to `out`.
absl::Status DequantizeQ4Window(const Q4Window& window, DType dtype, void* out);

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_Q4_WINDOW_H_
