#include "kernels/tensor.h"

#include <sys/mman.h>

#include <cctype>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace expertmesh::kernels {
namespace {

// Host tensors of at least this size get a mapping of their own (see Empty).
constexpr size_t kMapThresholdBytes = size_t{1} << 20;
// Mappings of at least this size may be backed by transparent huge pages (MADV_HUGEPAGE; the
// system's default "madvise" mode uses them nowhere else): the whole 2 MiB pages inside the
// mapping, with no rounding up. Why: a paged KV cache is read in short runs (a cache block's
// positions, one kv head's slice of each) spread over tens of MiB per layer, one 4 KiB page
// per few runs: decode attention over 8 x 4,096 positions (BM_PagedAttentionDecodeBf16/8/4096,
// Zen 4) took 9.4-9.5 ms in 4 KiB pages and 7.8-8.0 ms in huge ones.
constexpr size_t kHugePageAdviceBytes = size_t{4} << 20;

}  // namespace

std::string_view DeviceName(Device device) {
  switch (device) {
    case Device::kCpu:
      return "cpu";
    case Device::kCuda:
      return "cuda";
  }
  return "unknown";
}

absl::Status Tensor::CheckShape(std::span<const int64_t> shape) {
  if (shape.size() > static_cast<size_t>(kMaxTensorRank)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor rank ", shape.size(), " exceeds the maximum ", kMaxTensorRank));
  }
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("negative dimension in shape [", absl::StrJoin(shape, ", "), "]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Tensor::Empty(DType dtype, std::span<const int64_t> shape) {
  if (absl::Status s = CheckShape(shape); !s.ok()) return s;
  Tensor t;
  t.defined_ = true;
  t.dtype_ = dtype;
  t.device_ = Device::kCpu;
  t.rank_ = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape_[i] = shape[i];
  size_t bytes = t.nbytes();
  if (bytes >= kMapThresholdBytes) {
    // Large buffers are their own mappings, returned to the system when freed: from the heap,
    // a freed temporary (a weight staged before its backend copy) stays resident as long as
    // any later small allocation sits above it, which long-lived ones (block scales) do.
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot map ", bytes, " bytes for tensor ", t.DebugString()));
    }
    if (bytes >= kHugePageAdviceBytes) (void)madvise(p, bytes, MADV_HUGEPAGE);  // advice only
    t.data_ = p;
    t.owner_ = std::shared_ptr<const void>(
        p, [bytes](const void* q) { munmap(const_cast<void*>(q), bytes); });
    return t;
  }
  // aligned_alloc needs a size that is a multiple of the alignment, and at least one line so
  // that empty tensors still have a valid, unique pointer.
  size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  if (rounded == 0) rounded = kCpuAlignment;
  void* p = std::aligned_alloc(kCpuAlignment, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", rounded, " bytes for tensor ", t.DebugString()));
  }
  t.data_ = p;
  t.owner_ = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return t;
}

absl::StatusOr<Tensor> Tensor::Zeros(DType dtype, std::span<const int64_t> shape) {
  absl::StatusOr<Tensor> t = Empty(dtype, shape);
  if (t.ok()) std::memset(t->data_, 0, t->nbytes());
  return t;
}

absl::StatusOr<Tensor> Tensor::View(void* data, DType dtype, std::span<const int64_t> shape,
                                    Device device, std::shared_ptr<const void> keep_alive) {
  if (absl::Status s = CheckShape(shape); !s.ok()) return s;
  Tensor t;
  t.defined_ = true;
  t.dtype_ = dtype;
  t.device_ = device;
  t.rank_ = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape_[i] = shape[i];
  if (data == nullptr && t.numel() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("null data for a non-empty tensor view ", t.DebugString()));
  }
  t.data_ = data;
  t.owner_ = std::move(keep_alive);
  return t;
}

int64_t Tensor::stride(int i) const {
  if (i < 0) i += rank_;
  int64_t s = 1;
  for (int j = rank_ - 1; j > i; --j) s *= shape_[j];
  return s;
}

int64_t Tensor::numel() const {
  if (!defined_) return 0;
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= shape_[i];
  return n;
}

absl::StatusOr<Tensor> Tensor::Reshape(std::span<const int64_t> shape) const {
  if (absl::Status s = CheckShape(shape); !s.ok()) return s;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (!defined_ || n != numel()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot reshape ", DebugString(), " to [", absl::StrJoin(shape, ", "), "]"));
  }
  if (block_scales_ != nullptr && (shape.size() != 2 || shape[0] != shape_[0])) {
    return absl::InvalidArgumentError(absl::StrCat("cannot reshape the block-quantized ",
                                                   DebugString(), " (its scales are 2-D)"));
  }
  Tensor t = *this;
  t.rank_ = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape_[i] = shape[i];
  return t;
}

absl::StatusOr<Tensor> Tensor::WithBlockScales(BlockScales scales) const {
  if (!defined_ || (dtype_ != DType::kF8E4M3 && dtype_ != DType::kQ4) || rank_ != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("block scales need a 2-D fp8 or q4 tensor, got ", DebugString()));
  }
  const auto bad_grid = [&](const Tensor* grid) {
    return grid == nullptr || !grid->defined() || grid->dtype() != DType::kF32 ||
           grid->rank() != 2 || grid->device() != device_;
  };
  const Tensor* grid = scales.scales.get();
  if (bad_grid(grid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("block scales of ", DebugString(), " must be a 2-D f32 tensor on ",
                     std::string(DeviceName(device_)), ", got ",
                     grid == nullptr ? std::string("none") : grid->DebugString()));
  }
  if (scales.block_rows < 1 || scales.block_cols < 1 || scales.row_offset < 0 ||
      scales.col_offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block scales of ", DebugString(), ": bad block ", scales.block_rows, "x",
                     scales.block_cols, " or offset ", scales.row_offset, ",", scales.col_offset));
  }
  if (dtype_ == DType::kQ4 &&
      (shape_[1] % 32 != 0 || scales.block_cols % 32 != 0 || scales.col_offset % 32 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "q4 weight ", DebugString(), ": columns (", shape_[1], "), group size (", scales.block_cols,
        ") and group offset (", scales.col_offset, ") must be multiples of 32"));
  }
  const int64_t need_rows =
      (scales.row_offset + shape_[0] + scales.block_rows - 1) / scales.block_rows;
  const int64_t need_cols =
      (scales.col_offset + shape_[1] + scales.block_cols - 1) / scales.block_cols;
  if (grid->dim(0) < need_rows || grid->dim(1) < need_cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("block scales ", grid->DebugString(), " do not cover ", DebugString(), " in ",
                     scales.block_rows, "x", scales.block_cols, " blocks (need [", need_rows, ", ",
                     need_cols, "])"));
  }
  if (const Tensor* zeros = scales.zero_points.get(); zeros != nullptr) {
    if (dtype_ != DType::kQ4) {
      return absl::InvalidArgumentError(
          absl::StrCat("zero points are for q4 weights only, got ", DebugString()));
    }
    if (bad_grid(zeros) || !zeros->SameShape(*grid)) {
      return absl::InvalidArgumentError(
          absl::StrCat("zero points of ", DebugString(), " must be an f32 grid shaped like its ",
                       "scales ", grid->DebugString(), ", got ", zeros->DebugString()));
    }
  }
  if (const Tensor* order = scales.column_order.get(); order != nullptr) {
    if (dtype_ != DType::kQ4 || !order->defined() || order->dtype() != DType::kI32 ||
        order->rank() != 1 || order->dim(0) != shape_[1] || order->device() != Device::kCpu) {
      return absl::InvalidArgumentError(
          absl::StrCat("column order of ", DebugString(), " must be a CPU i32 [", shape_[1],
                       "] tensor on a q4 weight, got ", order->DebugString()));
    }
    const int32_t* o = order->data<int32_t>();
    for (int64_t j = 0; j < shape_[1]; ++j) {
      if (o[j] < 0 || o[j] >= shape_[1]) {
        return absl::InvalidArgumentError(absl::StrCat("column order of ", DebugString(),
                                                       ": entry ", j, " is ", o[j],
                                                       ", outside [0, ", shape_[1], ")"));
      }
    }
  }
  Tensor t = *this;
  t.block_scales_ = std::make_shared<const BlockScales>(std::move(scales));
  return t;
}

absl::StatusOr<Tensor> Tensor::Slice(int64_t begin, int64_t end) const {
  if (!defined_ || rank_ == 0 || begin < 0 || end < begin || end > shape_[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice [", begin, ", ", end, ") out of range for ", DebugString()));
  }
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.data_ = static_cast<char*>(data_) + DTypeBytes(dtype_, begin * stride(0));
  if (block_scales_ != nullptr && begin != 0) {
    auto moved = std::make_shared<BlockScales>(*block_scales_);
    moved->row_offset += begin;
    t.block_scales_ = std::move(moved);
  }
  return t;
}

bool Tensor::SameShape(const Tensor& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i) {
    if (shape_[i] != other.shape_[i]) return false;
  }
  return true;
}

std::string Tensor::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape(), ", "), "]");
}

std::string Tensor::DebugString() const {
  if (!defined_) return "undefined";
  std::string name(DTypeName(dtype_));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string s = absl::StrCat(name, ShapeString());
  if (device_ != Device::kCpu) absl::StrAppend(&s, "@", std::string(DeviceName(device_)));
  return s;
}

}  // namespace expertmesh::kernels
