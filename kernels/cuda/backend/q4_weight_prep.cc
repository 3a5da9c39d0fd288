// TrimQ4Groups, Q4GroupsOf (see the header).
#include "kernels/cuda/backend/q4_weight_prep.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace expertmesh::cuda {

using kernels::BlockScales;
using kernels::Tensor;

namespace {

// Rows [rb0, rb0 + rows) x columns [cb0, cb0 + cols) of a host f32 grid; entries past the grid
// stay 0 (an empty weight still gets a 1x1 grid).
absl::StatusOr<Tensor> Window(const Tensor& full, int64_t rb0, int64_t cb0, int64_t rows,
                              int64_t cols) {
  absl::StatusOr<Tensor> grid = Tensor::Zeros(DType::kF32, {rows, cols});
  if (!grid.ok()) return grid.status();
  const int64_t ld = full.dim(1);
  for (int64_t r = 0; r < rows && rb0 + r < full.dim(0); ++r) {
    const int64_t n = std::min(cols, ld - cb0);
    if (n <= 0) break;
    std::memcpy(grid->data<float>() + r * cols, full.data<float>() + (rb0 + r) * ld + cb0,
                static_cast<size_t>(n) * sizeof(float));
  }
  return grid;
}

}  // namespace

absl::StatusOr<TrimmedQ4Groups> TrimQ4Groups(const Tensor& host_weight) {
  const BlockScales* s = host_weight.block_scales();
  const auto on_host = [](const std::shared_ptr<const Tensor>& t) {
    return t == nullptr || t->device() == kernels::Device::kCpu;
  };
  if (host_weight.dtype() != DType::kQ4 || host_weight.rank() != 2 || s == nullptr ||
      s->scales == nullptr || !on_host(s->scales) || !on_host(s->zero_points)) {
    return absl::InvalidArgumentError(absl::StrCat("cuda q4 weight: ", host_weight.DebugString(),
                                                   " is not a host q4 tensor with scales"));
  }
  const int64_t rows = host_weight.dim(0), cols = host_weight.dim(1);
  const int64_t rb0 = s->row_offset / s->block_rows, cb0 = s->col_offset / s->block_cols;
  const int64_t rb1 = rows > 0 ? (s->row_offset + rows - 1) / s->block_rows : rb0;
  const int64_t cb1 = cols > 0 ? (s->col_offset + cols - 1) / s->block_cols : cb0;
  TrimmedQ4Groups t;
  absl::StatusOr<Tensor> scales = Window(*s->scales, rb0, cb0, rb1 - rb0 + 1, cb1 - cb0 + 1);
  if (!scales.ok()) return scales.status();
  t.scales = *std::move(scales);
  if (s->zero_points != nullptr) {
    absl::StatusOr<Tensor> zeros = Window(*s->zero_points, rb0, cb0, rb1 - rb0 + 1, cb1 - cb0 + 1);
    if (!zeros.ok()) return zeros.status();
    t.zero_points = *std::move(zeros);
  }
  t.layout.block_rows = s->block_rows;
  t.layout.block_cols = s->block_cols;
  t.layout.row_offset = s->row_offset - rb0 * s->block_rows;
  t.layout.col_offset = s->col_offset - cb0 * s->block_cols;
  t.layout.column_order = s->column_order;
  return t;
}

Q4Groups Q4GroupsOf(const Tensor& weight, const int32_t* device_order) {
  const BlockScales& s = *weight.block_scales();
  Q4Groups g;
  g.scales = s.scales->data<const float>();
  g.zero_points = s.zero_points != nullptr ? s.zero_points->data<const float>() : nullptr;
  g.column_order = device_order;
  g.ld = static_cast<int32_t>(s.scales->dim(1));
  g.row_offset = static_cast<int32_t>(s.row_offset);
  g.col_offset = static_cast<int32_t>(s.col_offset);
  g.block_rows = static_cast<int32_t>(s.block_rows);
  g.group_size = static_cast<int32_t>(s.block_cols);
  return g;
}

}  // namespace expertmesh::cuda
