// Loading the part of a tensor a tensor-parallel rank owns. Rows (dim 0) of a row-major tensor
// are contiguous, so a row slice is a zero-copy view; any other dimension is strided and is
// copied into a caller-owned buffer.
//
// Errors are INVALID_ARGUMENT naming the tensor: a dim outside the shape, a range outside the
// dimension, or an output buffer of the wrong size.
#ifndef EXPERTMESH_MODEL_SAFETENSORS_TENSOR_SLICE_H_
#define EXPERTMESH_MODEL_SAFETENSORS_TENSOR_SLICE_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/safetensors/safetensors_file.h"

namespace expertmesh::model {

// Rows [start, start + length) of dimension 0, as a view into the same memory.
// REQUIRES: view.shape is not empty.
absl::StatusOr<TensorView> SliceRows(const TensorView& view, int64_t start, int64_t length);

// Bytes ReadSlice writes for `length` indices along `dim`. INVALID_ARGUMENT on a bad dim.
absl::StatusOr<size_t> SliceBytes(const TensorView& view, int dim, int64_t length);

// Copies indices [start, start + length) along `dim` into `out`, row-major with the shape of
// the view except shape[dim] == length. `out.size()` must equal SliceBytes(view, dim, length).
absl::Status ReadSlice(const TensorView& view, int dim, int64_t start, int64_t length,
                       std::span<std::byte> out);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_SAFETENSORS_TENSOR_SLICE_H_
