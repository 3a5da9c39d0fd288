// Tensor: a dense, contiguous, row-major n-d array (rank 0..5) of one DType on one device.
//
// A Tensor either owns its memory (through a shared buffer: copies share it, the last one frees
// it) or is a view over memory someone else keeps alive (mmapped weights, a slice of another
// tensor, a caller's buffer). Views may carry a keep-alive handle so that, for example, a weight
// view keeps its MappedFile open. Copying a Tensor never copies data.
//
// Thread safety: a Tensor object is a value; concurrent reads of its data are safe, writers must
// synchronise externally (the Backend's stream order does that for ops).
#ifndef EXPERTMESH_KERNELS_TENSOR_H_
#define EXPERTMESH_KERNELS_TENSOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace expertmesh::kernels {

enum class Device : uint8_t { kCpu, kCuda };
std::string_view DeviceName(Device device);

inline constexpr int kMaxTensorRank = 5;

class Tensor;

// The scales of a block-quantized 2-D weight: element [r][c] of the weight is
//   (stored value - zero point) * scales[(r + row_offset) / block_rows][(c + col_offset) /
//   block_cols]
// The offsets say where the weight starts inside the checkpoint's block grid, so a tensor- or
// expert-parallel slice that cuts through a block keeps the right scales.
//  - fp8 e4m3 (DeepSeek-V3's 128 x 128 blocks; per-channel fp8 is blocks of 1 x in_features):
//    no zero point.
//  - kQ4 (int4 groups, compressed-tensors and GPTQ): blocks of 1 x group size along each row;
//    block_cols and col_offset are multiples of 32 (a kernel unit, kernels/q4_layout.h, never
//    straddles two groups). The zero point is 8 (symmetric int4 stored with a bias of 8) unless
//    `zero_points` gives one per block (asymmetric GPTQ).
struct BlockScales {
  std::shared_ptr<const Tensor> scales;  // [row blocks, col blocks] f32, same device as weight
  // kQ4 only, optional: [row blocks, col blocks] f32 integer zero points in 0..15.
  std::shared_ptr<const Tensor> zero_points;
  // kQ4 only, optional: i32 [cols] on the CPU; column j of the weight multiplies input feature
  // column_order[j]. GPTQ with desc_act (act-order) assigns input features to groups out of
  // order (g_idx); the loader sorts the columns by group so each group is contiguous again,
  // and the product gathers the activations in that order.
  std::shared_ptr<const Tensor> column_order;
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  int64_t row_offset = 0;
  int64_t col_offset = 0;
};
// Every CPU allocation is aligned to this many bytes (one cache line, one AVX-512 vector).
inline constexpr size_t kCpuAlignment = 64;

class Tensor {
 public:
  // An undefined tensor: defined() is false, rank 0, no data. Optional op arguments use it.
  Tensor() = default;

  // Allocates an uninitialised CPU tensor, kCpuAlignment-aligned.
  // Errors: InvalidArgument for rank > kMaxTensorRank or a negative dimension;
  // ResourceExhausted when the allocation fails.
  static absl::StatusOr<Tensor> Empty(DType dtype, std::span<const int64_t> shape);
  static absl::StatusOr<Tensor> Empty(DType dtype, std::initializer_list<int64_t> shape) {
    return Empty(dtype, std::span<const int64_t>(shape.begin(), shape.size()));
  }
  // As Empty, with every byte zero (0.0 for all float dtypes).
  static absl::StatusOr<Tensor> Zeros(DType dtype, std::span<const int64_t> shape);
  static absl::StatusOr<Tensor> Zeros(DType dtype, std::initializer_list<int64_t> shape) {
    return Zeros(dtype, std::span<const int64_t>(shape.begin(), shape.size()));
  }

  // A non-owning view over `data` (which must hold DTypeBytes(dtype, numel) bytes laid out
  // contiguously). `keep_alive`, if set, is held as long as any copy of the view lives.
  // Errors: InvalidArgument for a bad shape, or null data with a non-empty shape.
  static absl::StatusOr<Tensor> View(void* data, DType dtype, std::span<const int64_t> shape,
                                     Device device = Device::kCpu,
                                     std::shared_ptr<const void> keep_alive = nullptr);
  static absl::StatusOr<Tensor> View(void* data, DType dtype, std::initializer_list<int64_t> shape,
                                     Device device = Device::kCpu,
                                     std::shared_ptr<const void> keep_alive = nullptr) {
    return View(data, dtype, std::span<const int64_t>(shape.begin(), shape.size()), device,
                std::move(keep_alive));
  }

  bool defined() const { return defined_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int rank() const { return rank_; }
  // Dimension i; negative i counts from the end (dim(-1) is the innermost).
  // REQUIRES: -rank() <= i < rank().
  int64_t dim(int i) const { return shape_[i < 0 ? i + rank_ : i]; }
  std::span<const int64_t> shape() const { return {shape_.data(), static_cast<size_t>(rank_)}; }
  // Stride of dimension i in elements (contiguous row-major).
  int64_t stride(int i) const;
  int64_t numel() const;
  size_t nbytes() const { return DTypeBytes(dtype_, numel()); }

  void* raw_data() const { return data_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }

  // The same bytes under another shape with the same number of elements.
  // Errors: InvalidArgument when the element counts differ or the shape is invalid.
  absl::StatusOr<Tensor> Reshape(std::span<const int64_t> shape) const;
  absl::StatusOr<Tensor> Reshape(std::initializer_list<int64_t> shape) const {
    return Reshape(std::span<const int64_t>(shape.begin(), shape.size()));
  }
  // Rows [begin, end) of the outermost dimension, as a view sharing this tensor's buffer (a
  // block-quantized tensor keeps its scales, with the row offset moved by `begin`).
  // Errors: InvalidArgument for rank 0 or a range outside [0, dim(0)].
  absl::StatusOr<Tensor> Slice(int64_t begin, int64_t end) const;

  // Block-quantized weights (dtype kF8E4M3 or kQ4): the block scales, or null for a plain tensor.
  const BlockScales* block_scales() const { return block_scales_.get(); }
  // This tensor with `scales` attached. Errors: InvalidArgument unless this is a 2-D fp8 or kQ4
  // tensor and the scales (and zero points, kQ4 only) are f32 [row blocks, col blocks] grids on
  // the same device covering it; for kQ4 the columns, block_cols and col_offset must be
  // multiples of 32.
  absl::StatusOr<Tensor> WithBlockScales(BlockScales scales) const;

  bool SameShape(const Tensor& other) const;
  // "bf16[4, 128]" ("undefined" for an undefined tensor); for error messages.
  std::string DebugString() const;
  std::string ShapeString() const;

 private:
  static absl::Status CheckShape(std::span<const int64_t> shape);

  bool defined_ = false;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCpu;
  int rank_ = 0;
  std::array<int64_t, kMaxTensorRank> shape_{};
  void* data_ = nullptr;
  std::shared_ptr<const void> owner_;  // the allocation, or the view's keep-alive handle
  std::shared_ptr<const BlockScales> block_scales_;
};

}  // namespace expertmesh::kernels

#endif  // EXPERTMESH_KERNELS_TENSOR_H_
