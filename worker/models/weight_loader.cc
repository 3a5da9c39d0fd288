#include "worker/models/weight_loader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/safetensors/fp8_dequant.h"

namespace expertmesh::models {
namespace {

using runtime::Tensor;

std::string ShapeStr(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Drops the pages fully inside `bytes` from this process's page tables. The mapping is a
// read-only file mapping, so the data is still there if touched again; this only keeps a
// weight that was copied (fused, converted) from being counted twice in the resident set.
void ReleasePages(std::span<const std::byte> bytes) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(bytes.data());
  uintptr_t end = begin + bytes.size();
  begin = (begin + page - 1) / page * page;
  end = end / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

WeightLoader::WeightLoader(std::shared_ptr<model::Checkpoint> checkpoint,
                           const model::ModelConfig& config)
    : checkpoint_(std::move(checkpoint)), config_(config) {
  storage_dtype_ = config.torch_dtype == DType::kF32 ? DType::kF32 : DType::kBF16;
}

absl::StatusOr<WeightLoader> WeightLoader::Open(const std::string& model_dir,
                                                const model::ModelConfig& config) {
  ASSIGN_OR_RETURN(std::unique_ptr<model::Checkpoint> ckpt, model::Checkpoint::Open(model_dir));
  return WeightLoader(std::shared_ptr<model::Checkpoint>(std::move(ckpt)), config);
}

absl::StatusOr<model::TensorView> WeightLoader::View(std::string_view name,
                                                     const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(model::TensorView view, checkpoint_->Get(name));
  if (view.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(dir(), ": tensor ", std::string(name),
                                                   " has shape ", ShapeStr(view.shape),
                                                   ", the config implies ", ShapeStr(shape)));
  }
  switch (view.dtype) {
    case DType::kBF16:
    case DType::kF32:
    case DType::kF16:
    case DType::kF8E4M3:
      return view;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          dir(), ": tensor ", std::string(name), " has dtype ", std::string(DTypeName(view.dtype)),
          " (expected BF16, F16, F32 or F8_E4M3)"));
  }
}

absl::Status WeightLoader::Convert(const model::TensorView& view, std::string_view name,
                                   void* out) const {
  const int64_t n = view.NumElements();
  if (view.dtype == DType::kF8E4M3) {
    if (view.shape.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir(), ": fp8 tensor ", std::string(name), " must be 2-D"));
    }
    const std::string scale_name = absl::StrCat(std::string(name), "_scale_inv");
    ASSIGN_OR_RETURN(model::TensorView scale, checkpoint_->Get(scale_name));
    model::Fp8BlockSize block;
    if (config_.fp8_quantization.has_value()) {
      block.rows = config_.fp8_quantization->block_rows;
      block.cols = config_.fp8_quantization->block_cols;
    }
    return model::DequantizeFp8Rows(
        view, scale, block, 0, view.shape[0], storage_dtype_,
        std::span<std::byte>(static_cast<std::byte*>(out), n * DTypeSize(storage_dtype_)));
  }
  if (view.dtype == storage_dtype_) {
    std::memcpy(out, view.data.data(), view.data.size());
    return absl::OkStatus();
  }
  for (int64_t i = 0; i < n; ++i) {
    float v = 0;
    uint16_t bits16;
    switch (view.dtype) {
      case DType::kBF16:
        std::memcpy(&bits16, view.data.data() + 2 * i, 2);
        v = Bf16ToFloat(bits16);
        break;
      case DType::kF16:
        std::memcpy(&bits16, view.data.data() + 2 * i, 2);
        v = F16ToFloat(bits16);
        break;
      case DType::kF32:
        std::memcpy(&v, view.data.data() + 4 * i, 4);
        break;
      default:
        return absl::InternalError("unreachable dtype");
    }
    if (storage_dtype_ == DType::kF32) {
      static_cast<float*>(out)[i] = v;
    } else {
      static_cast<uint16_t*>(out)[i] = FloatToBf16(v);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> WeightLoader::Get(std::string_view name, std::vector<int64_t> shape) {
  ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
  if (view.dtype == DType::kBF16 || view.dtype == DType::kF32) {
    bytes_loaded_ += view.data.size();
    return Tensor::View(const_cast<std::byte*>(view.data.data()), view.dtype, shape,
                        runtime::Device::kCpu, checkpoint_);
  }
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(storage_dtype_, shape));
  RETURN_IF_ERROR(Convert(view, name, t.raw_data()));
  ReleasePages(view.data);
  bytes_loaded_ += t.nbytes();
  return t;
}

absl::StatusOr<Tensor> WeightLoader::GetOptional(std::string_view name,
                                                 std::vector<int64_t> shape) {
  if (!checkpoint_->Contains(name)) return Tensor();
  return Get(name, std::move(shape));
}

absl::StatusOr<std::vector<float>> WeightLoader::GetFloats(std::string_view name,
                                                           std::vector<int64_t> shape) {
  ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
  std::vector<float> out(static_cast<size_t>(view.NumElements()));
  if (view.dtype == DType::kF8E4M3) {
    model::Fp8BlockSize block;
    if (config_.fp8_quantization.has_value()) {
      block.rows = config_.fp8_quantization->block_rows;
      block.cols = config_.fp8_quantization->block_cols;
    }
    ASSIGN_OR_RETURN(model::TensorView scale,
                     checkpoint_->Get(absl::StrCat(std::string(name), "_scale_inv")));
    RETURN_IF_ERROR(model::DequantizeFp8Rows(
        view, scale, block, 0, view.shape[0], DType::kF32,
        std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size() * 4)));
    return out;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits16;
    switch (view.dtype) {
      case DType::kBF16:
        std::memcpy(&bits16, view.data.data() + 2 * i, 2);
        out[i] = Bf16ToFloat(bits16);
        break;
      case DType::kF16:
        std::memcpy(&bits16, view.data.data() + 2 * i, 2);
        out[i] = F16ToFloat(bits16);
        break;
      default:
        std::memcpy(&out[i], view.data.data() + 4 * i, 4);
    }
  }
  return out;
}

absl::StatusOr<Tensor> WeightLoader::GetF32(std::string_view name, std::vector<int64_t> shape) {
  ASSIGN_OR_RETURN(std::vector<float> values, GetFloats(name, shape));
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(DType::kF32, shape));
  std::memcpy(t.raw_data(), values.data(), values.size() * 4);
  bytes_loaded_ += t.nbytes();
  return t;
}

absl::StatusOr<Tensor> WeightLoader::ConcatRows(const std::vector<std::string>& names,
                                                const std::vector<int64_t>& rows, int64_t cols) {
  int64_t total = 0;
  for (int64_t r : rows) total += r;
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(storage_dtype_, {total, cols}));
  auto* dst = static_cast<std::byte*>(t.raw_data());
  for (size_t i = 0; i < names.size(); ++i) {
    ASSIGN_OR_RETURN(model::TensorView view, View(names[i], {rows[i], cols}));
    RETURN_IF_ERROR(Convert(view, names[i], dst));
    ReleasePages(view.data);
    dst += rows[i] * cols * DTypeSize(storage_dtype_);
  }
  bytes_loaded_ += t.nbytes();
  return t;
}

absl::StatusOr<Tensor> WeightLoader::FromFloats(const std::vector<float>& values,
                                                std::vector<int64_t> shape) {
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(storage_dtype_, shape));
  if (t.numel() != static_cast<int64_t>(values.size())) {
    return absl::InternalError("FromFloats: element count mismatch");
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (storage_dtype_ == DType::kF32) {
      t.data<float>()[i] = values[i];
    } else {
      t.data<uint16_t>()[i] = FloatToBf16(values[i]);
    }
  }
  bytes_loaded_ += t.nbytes();
  return t;
}

}  // namespace expertmesh::models
