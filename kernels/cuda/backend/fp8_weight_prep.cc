// TrimBlockScales, Fp8ScalesOf, SummarizeFp8Scales (see the header).
#include "kernels/cuda/backend/fp8_weight_prep.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace expertmesh::cuda {

using kernels::BlockScales;
using kernels::Tensor;

absl::StatusOr<TrimmedScales> TrimBlockScales(const Tensor& host_weight) {
  const BlockScales* s = host_weight.block_scales();
  if (host_weight.dtype() != DType::kF8E4M3 || host_weight.rank() != 2 || s == nullptr ||
      s->scales == nullptr || s->scales->device() != kernels::Device::kCpu) {
    return absl::InvalidArgumentError(absl::StrCat("cuda fp8 weight: ", host_weight.DebugString(),
                                                   " is not a host fp8 tensor with scales"));
  }
  const int64_t rows = host_weight.dim(0), cols = host_weight.dim(1);
  const int64_t rb0 = s->row_offset / s->block_rows, cb0 = s->col_offset / s->block_cols;
  // An empty weight still gets a 1x1 grid, so the tensor keeps valid scales.
  const int64_t rb1 = rows > 0 ? (s->row_offset + rows - 1) / s->block_rows : rb0;
  const int64_t cb1 = cols > 0 ? (s->col_offset + cols - 1) / s->block_cols : cb0;
  const int64_t grid_rows = rb1 - rb0 + 1, grid_cols = cb1 - cb0 + 1;
  const Tensor& full = *s->scales;
  TrimmedScales t;
  absl::StatusOr<Tensor> grid = Tensor::Zeros(DType::kF32, {grid_rows, grid_cols});
  if (!grid.ok()) return grid.status();
  t.grid = *std::move(grid);
  const int64_t ld = full.dim(1);
  for (int64_t r = 0; r < grid_rows && rb0 + r < full.dim(0); ++r) {
    const int64_t n = std::min(grid_cols, ld - cb0);
    if (n <= 0) break;
    std::memcpy(t.grid.data<float>() + r * grid_cols, full.data<float>() + (rb0 + r) * ld + cb0,
                static_cast<size_t>(n) * sizeof(float));
  }
  t.layout.block_rows = s->block_rows;
  t.layout.block_cols = s->block_cols;
  t.layout.row_offset = s->row_offset - rb0 * s->block_rows;
  t.layout.col_offset = s->col_offset - cb0 * s->block_cols;
  return t;
}

Fp8Scales Fp8ScalesOf(const Tensor& weight) {
  const BlockScales& s = *weight.block_scales();
  Fp8Scales f;
  f.scales = s.scales->data<const float>();
  f.ld = static_cast<int32_t>(s.scales->dim(1));
  f.row_offset = static_cast<int32_t>(s.row_offset);
  f.col_offset = static_cast<int32_t>(s.col_offset);
  f.block_rows = static_cast<int32_t>(s.block_rows);
  f.block_cols = static_cast<int32_t>(s.block_cols);
  return f;
}

void SummarizeFp8Scales(std::span<const Tensor> weights, Fp8GemmArgs& args) {
  bool first = true;
  for (const Tensor& w : weights) {
    if (!w.defined() || w.block_scales() == nullptr) continue;
    const BlockScales& s = *w.block_scales();
    const int32_t bc = static_cast<int32_t>(std::min<int64_t>(s.block_cols, INT32_MAX));
    args.min_block_cols = first ? bc : std::min(args.min_block_cols, bc);
    first = false;
    args.blocks_128_aligned =
        args.blocks_128_aligned && s.block_cols % 128 == 0 && s.col_offset % 128 == 0;
  }
}

}  // namespace expertmesh::cuda
