#include "model/safetensors/tensor_slice.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace expertmesh::model {
namespace {

absl::Status CheckRange(const TensorView& view, int dim, int64_t start, int64_t length) {
  if (dim < 0 || static_cast<size_t>(dim) >= view.shape.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", view.name, "': dim ", dim, " outside its ", view.shape.size(), " dimensions"));
  }
  const int64_t extent = view.shape[static_cast<size_t>(dim)];
  if (start < 0 || length < 0 || start > extent || length > extent - start) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", view.name, "': slice [", start, ", ",
                                                   start + length, ") of dim ", dim,
                                                   " outside [0, ", extent, ")"));
  }
  return absl::OkStatus();
}

// Elements after `dim` (the contiguous run of one index of `dim`), times the element size.
size_t InnerBytes(const TensorView& view, int dim) {
  size_t inner = DTypeSize(view.dtype);
  for (size_t d = static_cast<size_t>(dim) + 1; d < view.shape.size(); ++d) {
    inner *= static_cast<size_t>(view.shape[d]);
  }
  return inner;
}

}  // namespace

absl::StatusOr<TensorView> SliceRows(const TensorView& view, int64_t start, int64_t length) {
  absl::Status status = CheckRange(view, 0, start, length);
  if (!status.ok()) return status;
  const size_t row = InnerBytes(view, 0);
  TensorView out = view;
  out.shape[0] = length;
  out.data = view.data.subspan(static_cast<size_t>(start) * row, static_cast<size_t>(length) * row);
  return out;
}

absl::StatusOr<size_t> SliceBytes(const TensorView& view, int dim, int64_t length) {
  absl::Status status = CheckRange(view, dim, 0, 0);
  if (!status.ok()) return status;
  size_t outer = 1;
  for (int d = 0; d < dim; ++d) outer *= static_cast<size_t>(view.shape[static_cast<size_t>(d)]);
  return outer * static_cast<size_t>(length) * InnerBytes(view, dim);
}

absl::Status ReadSlice(const TensorView& view, int dim, int64_t start, int64_t length,
                       std::span<std::byte> out) {
  absl::Status status = CheckRange(view, dim, start, length);
  if (!status.ok()) return status;
  absl::StatusOr<size_t> bytes = SliceBytes(view, dim, length);
  if (!bytes.ok()) return bytes.status();
  if (out.size() != *bytes) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", view.name, "': output buffer has ",
                                                   out.size(), " bytes, the slice needs ", *bytes));
  }
  const size_t inner = InnerBytes(view, dim);
  const size_t extent = static_cast<size_t>(view.shape[static_cast<size_t>(dim)]);
  const size_t run = static_cast<size_t>(length) * inner;
  if (run == 0) return absl::OkStatus();
  const size_t outer = *bytes / run;
  for (size_t o = 0; o < outer; ++o) {
    const size_t from = (o * extent + static_cast<size_t>(start)) * inner;
    std::memcpy(out.data() + o * run, view.data.data() + from, run);
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::model
