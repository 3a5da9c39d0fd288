#include "worker/models/weight_loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "model/config/weight_layout.h"
#include "model/safetensors/fp8_dequant.h"
#include "model/safetensors/fp8_quantize.h"
#include "model/safetensors/int4_quantize.h"

namespace expertmesh::models {
namespace {

using kernels::Tensor;

std::string ShapeStr(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

using model::FloatAt;

// The bytes a weight occupies with its quantization data: block scales, zero points and
// column order.
uint64_t WeightBytes(const Tensor& t) {
  uint64_t bytes = t.nbytes();
  if (const kernels::BlockScales* s = t.block_scales(); s != nullptr) {
    for (const auto* part : {s->scales.get(), s->zero_points.get(), s->column_order.get()}) {
      if (part != nullptr) bytes += part->nbytes();
    }
  }
  return bytes;
}

}  // namespace

WeightLoader::WeightLoader(std::shared_ptr<model::Checkpoint> checkpoint,
                           const model::ModelConfig& config)
    : checkpoint_(std::move(checkpoint)), config_(config) {
  storage_dtype_ = config.torch_dtype == DType::kF32 ? DType::kF32 : DType::kBF16;
  if (config.int4_quantization.has_value()) {
    for (model::LinearSpec& linear : model::LinearLayers(config)) {
      if (linear.format == model::LinearFormat::kInt4CompressedTensors ||
          linear.format == model::LinearFormat::kInt4Gptq) {
        std::string name = linear.module + ".weight";
        int4_.emplace(std::move(name), std::move(linear));
      }
    }
  }
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
  if (view.dtype == DType::kF8E4M3) return DequantizeFp8(view, name, storage_dtype_, out);
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

absl::StatusOr<Tensor> WeightLoader::Materialize(std::string_view name,
                                                 const std::vector<int64_t>& shape) {
  ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
  return Materialize(view, name, shape);
}

bool WeightLoader::KeepsFp8() const {
  return backend_ != nullptr && backend_->SupportsFp8Weights();
}

bool WeightLoader::KeepsQ4() const { return backend_ != nullptr && backend_->SupportsQ4Weights(); }

absl::Status WeightLoader::DequantizeFp8(const model::TensorView& view, std::string_view name,
                                         DType dtype, void* out) const {
  // The scales as an f32 grid whatever their stored dtype (ScalesOf checks them).
  ASSIGN_OR_RETURN(kernels::BlockScales scales, ScalesOf(view, name));
  const Tensor& grid = *scales.scales;
  const model::TensorView scale_view{
      std::string(name) + " scales", DType::kF32,
      std::vector<int64_t>(grid.shape().begin(), grid.shape().end()),
      std::span<const std::byte>(static_cast<const std::byte*>(grid.raw_data()), grid.nbytes())};
  return model::DequantizeFp8Rows(
      view, scale_view, {scales.block_rows, scales.block_cols}, 0, view.shape[0], dtype,
      std::span<std::byte>(static_cast<std::byte*>(out), view.NumElements() * DTypeSize(dtype)));
}

const model::LinearSpec* WeightLoader::Int4Linear(std::string_view name) const {
  auto it = int4_.find(absl::string_view(name.data(), name.size()));
  return it == int4_.end() ? nullptr : &it->second;
}

absl::StatusOr<Q4Window> WeightLoader::ReadQ4(const model::LinearSpec& linear, int64_t row_begin,
                                              int64_t rows, int64_t col_begin, int64_t cols) const {
  if (linear.format != model::LinearFormat::kPlain) {
    return ReadQ4Window(*checkpoint_, *config_.int4_quantization, linear, row_begin, rows,
                        col_begin, cols);
  }
  // Quantized at load (QuantizeExpertWeightsToInt4): the whole weight, then the window.
  const std::string name = linear.module + ".weight";
  ASSIGN_OR_RETURN(model::TensorView view, View(name, {linear.out, linear.in}));
  std::vector<float> values(static_cast<size_t>(view.NumElements()));
  for (size_t i = 0; i < values.size(); ++i) values[i] = FloatAt(view, static_cast<int64_t>(i));
  const int64_t group = model::Int4QuantizeGroupFor(linear.in);
  if (group == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir(), ": tensor ", name,
        ": --quantize int4 needs rows that are multiples of 32 values, not ", linear.in));
  }
  const int64_t groups = linear.in / group;
  std::vector<uint8_t> q(values.size());
  std::vector<float> scales(static_cast<size_t>(linear.out * groups));
  // Scales rounded as a checkpoint of this dtype stores them, so the result equals the int4
  // checkpoint make-model writes from the same values.
  RETURN_IF_ERROR(model::QuantizeInt4Groups(values, linear.out, linear.in, group,
                                            config_.torch_dtype, q, scales));
  ReleaseMappedPages(view.data);
  Q4Window w;
  w.name = name;
  w.rows = rows;
  w.cols = cols;
  w.group_size = group;
  w.first_group = col_begin / group;
  w.col_offset = col_begin % group;
  w.groups = cols == 0 ? 0 : (col_begin + cols - 1) / group - w.first_group + 1;
  w.q.resize(static_cast<size_t>(rows * cols));
  w.scales.resize(static_cast<size_t>(rows * w.groups));
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(w.q.data() + r * cols, q.data() + (row_begin + r) * linear.in + col_begin, cols);
    std::memcpy(w.scales.data() + r * w.groups,
                scales.data() + (row_begin + r) * groups + w.first_group, w.groups * sizeof(float));
  }
  return w;
}

absl::StatusOr<Tensor> WeightLoader::FromQ4Window(const Q4Window& window) {
  Tensor t;
  if (KeepsQ4()) {
    ASSIGN_OR_RETURN(t, PackQ4Window(window));
  } else {
    // No q4 kernels: the dequantized values, as fp8 weights are widened.
    ASSIGN_OR_RETURN(t, Tensor::Empty(storage_dtype_, {window.rows, window.cols}));
    RETURN_IF_ERROR(DequantizeQ4Window(window, storage_dtype_, t.raw_data()));
  }
  bytes_loaded_ += WeightBytes(t);
  return Prepare(std::move(t), false);
}

absl::StatusOr<Tensor> WeightLoader::GetQ4(const model::LinearSpec& linear,
                                           const std::vector<int64_t>& shape, int64_t row_begin,
                                           int64_t rows, int64_t col_begin, int64_t cols) {
  const std::string name = linear.module + ".weight";
  if (shape != std::vector<int64_t>{linear.out, linear.in}) {
    return absl::InvalidArgumentError(absl::StrCat(dir(), ": int4 weight ", name, " is ",
                                                   ShapeStr({linear.out, linear.in}),
                                                   ", asked for as ", ShapeStr(shape)));
  }
  ASSIGN_OR_RETURN(Q4Window window, ReadQ4(linear, row_begin, rows, col_begin, cols));
  return FromQ4Window(window);
}

absl::Status WeightLoader::QuantizeExpertWeightsToInt4() {
  if (!KeepsQ4()) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir(), ": quantizing to int4 at load needs a backend that multiplies q4 weights, not ",
        backend_ == nullptr ? std::string("host tensors") : std::string(backend_->Name())));
  }
  if (config_.fp8_quantization.has_value() || config_.int4_quantization.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir(),
                     ": --quantize int4 needs a bf16, f16 or f32 checkpoint; this one is "
                     "already quantized"));
  }
  for (const model::LinearSpec& linear : model::LinearLayers(config_)) {
    if (linear.module.find(".experts.") != std::string::npos) {
      int4_.emplace(linear.module + ".weight", linear);
    }
  }
  return absl::OkStatus();
}

absl::Status WeightLoader::QuantizeLinearWeightsToFp8() {
  if (!KeepsFp8()) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir(), ": quantizing to fp8 at load needs a backend that multiplies fp8 weights, not ",
        backend_ == nullptr ? std::string("host tensors") : std::string(backend_->Name())));
  }
  if (config_.fp8_quantization.has_value()) return absl::OkStatus();  // already fp8
  if (config_.int4_quantization.has_value() || !int4_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(dir(), ": --quantize fp8 on int4 weights"));
  }
  model::ModelConfig quantized = config_;
  quantized.fp8_quantization = model::Fp8Quantization{};
  for (const model::TensorSpec& spec : model::ExpectedTensors(quantized)) {
    if (spec.fp8_block_quantized) quantize_.insert(spec.name);
  }
  return absl::OkStatus();
}

bool WeightLoader::IsFp8(const model::TensorView& view, std::string_view name) const {
  if (!KeepsFp8()) return false;
  return view.dtype == DType::kF8E4M3 ||
         quantize_.contains(absl::string_view(name.data(), name.size()));
}

absl::StatusOr<Tensor> WeightLoader::QuantizeToFp8(const model::TensorView& view,
                                                   std::string_view name,
                                                   const std::vector<int64_t>& shape) {
  if (shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir(), ": tensor ", std::string(name), " is not 2-D: cannot quantize it"));
  }
  ASSIGN_OR_RETURN(std::vector<float> values, GetFloats(name, shape));
  const model::Fp8BlockSize block = Fp8Block(shape[1]);
  ASSIGN_OR_RETURN(Tensor q, Tensor::Empty(DType::kF8E4M3, shape));
  ASSIGN_OR_RETURN(Tensor grid,
                   Tensor::Empty(DType::kF32, {(shape[0] + block.rows - 1) / block.rows,
                                               (shape[1] + block.cols - 1) / block.cols}));
  RETURN_IF_ERROR(model::QuantizeFp8Blocks(
      values, shape[0], shape[1], block, {q.data<uint8_t>(), static_cast<size_t>(q.numel())},
      {grid.data<float>(), static_cast<size_t>(grid.numel())}));
  ReleaseMappedPages(view.data);
  return q.WithBlockScales({.scales = std::make_shared<const Tensor>(std::move(grid)),
                            .block_rows = block.rows,
                            .block_cols = block.cols});
}

model::Fp8BlockSize WeightLoader::Fp8Block(int64_t cols) const {
  model::Fp8BlockSize block;
  if (config_.fp8_quantization.has_value() && config_.fp8_quantization->per_channel) {
    block.rows = 1;
    block.cols = std::max<int64_t>(cols, 1);
  } else if (config_.fp8_quantization.has_value()) {
    block.rows = config_.fp8_quantization->block_rows;
    block.cols = config_.fp8_quantization->block_cols;
  }
  return block;
}

absl::StatusOr<kernels::BlockScales> WeightLoader::ScalesOf(const model::TensorView& weight,
                                                            std::string_view name) const {
  const bool per_channel =
      config_.fp8_quantization.has_value() && config_.fp8_quantization->per_channel;
  const std::string scale_name =
      absl::StrCat(std::string(name), per_channel ? "_scale" : "_scale_inv");
  auto bad = [&](auto&&... what) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir(), ": fp8 tensor ", std::string(name), ": ", what...));
  };
  if (weight.shape.size() != 2) return bad("must be 2-D, has shape ", ShapeStr(weight.shape));
  if (!checkpoint_->Contains(scale_name)) return bad("its scale ", scale_name, " is missing");
  ASSIGN_OR_RETURN(model::TensorView scale, checkpoint_->Get(scale_name));
  const model::Fp8BlockSize block = Fp8Block(weight.shape[1]);
  const std::vector<int64_t> want = {(weight.shape[0] + block.rows - 1) / block.rows,
                                     (weight.shape[1] + block.cols - 1) / block.cols};
  if (scale.shape != want) {
    return bad(scale_name, " has shape ", ShapeStr(scale.shape), ", ", block.rows, "x", block.cols,
               " blocks of ", ShapeStr(weight.shape), " need ", ShapeStr(want));
  }
  if (scale.dtype != DType::kF32 && scale.dtype != DType::kBF16 && scale.dtype != DType::kF16) {
    return bad(scale_name, " has dtype ", std::string(DTypeName(scale.dtype)),
               " (expected F32, BF16 or F16)");
  }
  ASSIGN_OR_RETURN(Tensor grid, Tensor::Empty(DType::kF32, want));
  float* out = grid.data<float>();
  for (int64_t i = 0; i < grid.numel(); ++i) {
    out[i] = FloatAt(scale, i);
    if (!std::isfinite(out[i]) || out[i] < 0) {
      return bad(scale_name, " element ", i, " is ", out[i], " (scales must be finite, >= 0)");
    }
  }
  return kernels::BlockScales{.scales = std::make_shared<const Tensor>(std::move(grid)),
                              .block_rows = block.rows,
                              .block_cols = block.cols};
}

absl::StatusOr<Tensor> WeightLoader::Materialize(const model::TensorView& view,
                                                 std::string_view name,
                                                 const std::vector<int64_t>& shape) {
  if (view.dtype != DType::kF8E4M3 && IsFp8(view, name)) return QuantizeToFp8(view, name, shape);
  if (view.dtype == DType::kF8E4M3 && KeepsFp8()) {
    // As published: the mmapped e4m3 bytes, with their block scales.
    ASSIGN_OR_RETURN(kernels::BlockScales scales, ScalesOf(view, name));
    ASSIGN_OR_RETURN(Tensor t, Tensor::View(const_cast<std::byte*>(view.data.data()), view.dtype,
                                            shape, kernels::Device::kCpu, checkpoint_));
    return t.WithBlockScales(std::move(scales));
  }
  if (view.dtype == DType::kBF16 || view.dtype == DType::kF32) {
    return Tensor::View(const_cast<std::byte*>(view.data.data()), view.dtype, shape,
                        kernels::Device::kCpu, checkpoint_);
  }
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(storage_dtype_, shape));
  RETURN_IF_ERROR(Convert(view, name, t.raw_data()));
  ReleaseMappedPages(view.data);
  return t;
}

absl::StatusOr<Tensor> WeightLoader::Get(std::string_view name, std::vector<int64_t> shape) {
  if (const model::LinearSpec* q4 = Int4Linear(name); q4 != nullptr) {
    return GetQ4(*q4, shape, 0, q4->out, 0, q4->in);
  }
  ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
  ASSIGN_OR_RETURN(Tensor t, Materialize(view, name, shape));
  bytes_loaded_ += WeightBytes(t);
  const bool mapped = t.raw_data() == view.data.data();
  return Prepare(std::move(t), mapped);
}

absl::StatusOr<Tensor> WeightLoader::Prepare(Tensor host, bool mapped) {
  if (backend_ == nullptr) return host;
  ASSIGN_OR_RETURN(Tensor prepared, backend_->PrepareWeight(host));
  // The backend made its own copy: a checkpoint view's pages need not stay resident (the
  // mapping itself closes once the loader and the last view are gone).
  if (mapped && prepared.raw_data() != host.raw_data()) {
    ReleaseMappedPages({static_cast<const std::byte*>(host.raw_data()), host.nbytes()});
  }
  return prepared;
}

absl::StatusOr<Tensor> WeightLoader::GetRows(std::string_view name, std::vector<int64_t> shape,
                                             int64_t begin, int64_t count) {
  if (shape.empty() || begin < 0 || count < 0 || begin + count > shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat(dir(), ": tensor ", std::string(name),
                                                   ": row slice [", begin, ", ", begin + count,
                                                   ") outside ", ShapeStr(shape)));
  }
  if (begin == 0 && count == shape[0]) return Get(name, std::move(shape));
  if (const model::LinearSpec* q4 = Int4Linear(name); q4 != nullptr) {
    return GetQ4(*q4, shape, begin, count, 0, q4->in);
  }
  ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
  const bool zero_copy =
      view.dtype == DType::kF8E4M3
          ? KeepsFp8()
          : (view.dtype == DType::kBF16 || view.dtype == DType::kF32) && !IsFp8(view, name);
  ASSIGN_OR_RETURN(Tensor full, Materialize(view, name, shape));
  ASSIGN_OR_RETURN(Tensor rows, full.Slice(begin, begin + count));
  if (!zero_copy) {
    // A converted copy: keep only the slice, not the whole converted tensor.
    ASSIGN_OR_RETURN(Tensor own, Tensor::Empty(rows.dtype(), rows.shape()));
    std::memcpy(own.raw_data(), rows.raw_data(), rows.nbytes());
    if (const kernels::BlockScales* scales = rows.block_scales(); scales != nullptr) {
      ASSIGN_OR_RETURN(own, own.WithBlockScales(*scales));
    }
    rows = std::move(own);
  }
  bytes_loaded_ += WeightBytes(rows);
  return Prepare(std::move(rows), zero_copy);
}

absl::StatusOr<Tensor> WeightLoader::GetRowsPadded(std::string_view name,
                                                   std::vector<int64_t> shape, int64_t begin,
                                                   int64_t count, int64_t total_rows) {
  if (total_rows == count) return GetRows(name, std::move(shape), begin, count);
  if (shape.size() != 2 || total_rows < count || begin < 0 || count < 0 ||
      begin + count > shape[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir(), ": tensor ", std::string(name), ": padded row slice [", begin, ", ",
                     begin + count, ") of ", total_rows, " rows outside ", ShapeStr(shape)));
  }
  if (const model::LinearSpec* q4 = Int4Linear(name); q4 != nullptr) {
    // An int4 lm_head stays int4: the padding rows have scale 0, so they multiply to zero as the
    // zero rows of a plain table do.
    if (shape != std::vector<int64_t>{q4->out, q4->in}) {
      return absl::InvalidArgumentError(absl::StrCat(dir(), ": int4 weight ", std::string(name),
                                                     " is ", ShapeStr({q4->out, q4->in}),
                                                     ", asked for as ", ShapeStr(shape)));
    }
    ASSIGN_OR_RETURN(Q4Window window, ReadQ4(*q4, begin, count, 0, q4->in));
    PadQ4Rows(window, total_rows);
    return FromQ4Window(window);
  }
  ASSIGN_OR_RETURN(Tensor t, Tensor::Zeros(storage_dtype_, {total_rows, shape[1]}));
  if (count > 0) {
    ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
    ASSIGN_OR_RETURN(Tensor full, Materialize(view, name, shape));
    if (full.dtype() != storage_dtype_) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir(), ": tensor ", std::string(name), " is ", std::string(DTypeName(full.dtype())),
          ", the checkpoint's dtype ", std::string(DTypeName(storage_dtype_))));
    }
    ASSIGN_OR_RETURN(Tensor rows, full.Slice(begin, begin + count));
    std::memcpy(t.raw_data(), rows.raw_data(), rows.nbytes());
  }
  bytes_loaded_ += t.nbytes();
  return Prepare(std::move(t), false);
}

absl::StatusOr<Tensor> WeightLoader::GetRowsQuantizedToFp8(std::string_view name,
                                                           std::vector<int64_t> shape,
                                                           int64_t begin, int64_t count,
                                                           int64_t total_rows) {
  const std::string tensor(name);
  if (!KeepsFp8()) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir(), ": quantizing ", tensor, " to fp8 needs a backend that multiplies fp8 weights, not ",
        backend_ == nullptr ? std::string("host tensors") : std::string(backend_->Name())));
  }
  if (shape.size() != 2 || total_rows < count || begin < 0 || count < 0 ||
      begin + count > shape[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir(), ": tensor ", tensor, ": padded row slice [", begin, ", ", begin + count,
                     ") of ", total_rows, " rows outside ", ShapeStr(shape)));
  }
  if (Int4Linear(name) != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir(), ": tensor ", tensor, " is int4 already: it cannot be quantized to fp8"));
  }
  ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
  if (view.dtype != DType::kBF16 && view.dtype != DType::kF16 && view.dtype != DType::kF32) {
    return absl::FailedPreconditionError(absl::StrCat(dir(), ": tensor ", tensor, " is ",
                                                      std::string(DTypeName(view.dtype)),
                                                      ": only bf16, f16 or f32 ones are quantized "
                                                      "to fp8"));
  }
  const int64_t cols = shape[1];
  const model::Fp8BlockSize block;  // 128 x 128, as --quantize fp8 and the published files
  const int64_t grid_cols = (cols + block.cols - 1) / block.cols;
  // Blocks are those of the whole tensor, so a slice that starts inside a block row gets each
  // weight row's scales on a row of its own.
  const int64_t block_rows = begin % block.rows == 0 ? block.rows : 1;
  ASSIGN_OR_RETURN(Tensor q, Tensor::Zeros(DType::kF8E4M3, {total_rows, cols}));
  ASSIGN_OR_RETURN(
      Tensor grid,
      Tensor::Zeros(DType::kF32, {(total_rows + block_rows - 1) / block_rows, grid_cols}));
  std::vector<float> band;
  std::vector<uint8_t> band_q;
  std::vector<float> band_scales(static_cast<size_t>(grid_cols));
  // One block row of the whole tensor at a time: never the whole table in f32 (DeepSeek-V3's
  // lm_head would be 3.7 GB of it).
  for (int64_t first = begin / block.rows * block.rows; first < begin + count;
       first += block.rows) {
    const int64_t rows = std::min(block.rows, shape[0] - first);
    band.resize(static_cast<size_t>(rows * cols));
    band_q.resize(band.size());
    for (int64_t i = 0; i < rows * cols; ++i) band[i] = FloatAt(view, first * cols + i);
    RETURN_IF_ERROR(model::QuantizeFp8Blocks(band, rows, cols, block, band_q, band_scales));
    const int64_t from = std::max(first, begin), to = std::min(first + rows, begin + count);
    std::memcpy(q.data<uint8_t>() + (from - begin) * cols, band_q.data() + (from - first) * cols,
                (to - from) * cols);
    for (int64_t r = from; r < to; r += block_rows) {
      std::memcpy(grid.data<float>() + (r - begin) / block_rows * grid_cols, band_scales.data(),
                  grid_cols * sizeof(float));
    }
  }
  ReleaseMappedPages(view.data);
  ASSIGN_OR_RETURN(Tensor t,
                   q.WithBlockScales({.scales = std::make_shared<const Tensor>(std::move(grid)),
                                      .block_rows = block_rows,
                                      .block_cols = block.cols}));
  bytes_loaded_ += WeightBytes(t);
  return Prepare(std::move(t), false);
}

absl::StatusOr<Tensor> WeightLoader::GetCols(std::string_view name, std::vector<int64_t> shape,
                                             int64_t begin, int64_t count) {
  if (shape.size() != 2 || begin < 0 || count < 0 || begin + count > shape[1]) {
    return absl::InvalidArgumentError(absl::StrCat(dir(), ": tensor ", std::string(name),
                                                   ": column slice [", begin, ", ", begin + count,
                                                   ") outside ", ShapeStr(shape)));
  }
  if (begin == 0 && count == shape[1]) return Get(name, std::move(shape));
  if (const model::LinearSpec* q4 = Int4Linear(name); q4 != nullptr) {
    return GetQ4(*q4, shape, 0, q4->out, begin, count);
  }
  ASSIGN_OR_RETURN(Tensor full, Materialize(name, shape));
  ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(full.dtype(), {shape[0], count}));
  const size_t es = DTypeSize(full.dtype());
  const auto* src = static_cast<const std::byte*>(full.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  for (int64_t r = 0; r < shape[0]; ++r) {
    std::memcpy(dst + r * count * es, src + (r * shape[1] + begin) * es, count * es);
  }
  if (const kernels::BlockScales* scales = full.block_scales(); scales != nullptr) {
    // The copied columns start `begin` columns into the checkpoint's block grid.
    kernels::BlockScales moved = *scales;
    moved.col_offset += begin;
    ASSIGN_OR_RETURN(out, out.WithBlockScales(std::move(moved)));
  }
  bytes_loaded_ += WeightBytes(out);
  return Prepare(std::move(out), false);
}

absl::StatusOr<Tensor> WeightLoader::ConcatRowSlices(const std::vector<RowSlice>& parts,
                                                     int64_t cols) {
  int64_t total = 0;
  for (const RowSlice& p : parts) total += p.count;
  if (!parts.empty() && Int4Linear(parts[0].name) != nullptr) {
    // int4 parts stay int4: their values, scales and zero points are stacked.
    std::vector<Q4Window> windows;
    for (const RowSlice& p : parts) {
      const model::LinearSpec* q4 = Int4Linear(p.name);
      if (q4 == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(dir(), ": tensor ", p.name,
                                                       " is not int4 but is fused with int4 "
                                                       "tensors (",
                                                       parts[0].name, ")"));
      }
      if (q4->out != p.rows || q4->in != cols) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir(), ": int4 weight ", p.name, " is ", ShapeStr({q4->out, q4->in}),
                         ", asked for as ", ShapeStr({p.rows, cols})));
      }
      ASSIGN_OR_RETURN(Q4Window w, ReadQ4(*q4, p.begin, p.count, 0, cols));
      windows.push_back(std::move(w));
    }
    bool same_order = true;
    for (const Q4Window& w : windows) same_order &= w.column_order == windows[0].column_order;
    if (!same_order) {
      // GPTQ orders the columns of weights that read the same input alike (the order comes from
      // that input's Hessian), so a fused gate | up shares one order. Where a checkpoint's
      // orders differ no single column order serves the fused weight: it is dequantized, in
      // fp32 since (q - zero) * scale is not a bf16 number.
      ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(DType::kF32, {total, cols}));
      float* dst = t.data<float>();
      for (const Q4Window& w : windows) {
        RETURN_IF_ERROR(DequantizeQ4Window(w, DType::kF32, dst));
        dst += w.rows * cols;
      }
      bytes_loaded_ += t.nbytes();
      return Prepare(std::move(t), false);
    }
    ASSIGN_OR_RETURN(Q4Window fused, ConcatQ4Rows(std::move(windows)));
    return FromQ4Window(fused);
  }
  if (!parts.empty()) {
    ASSIGN_OR_RETURN(model::TensorView first, View(parts[0].name, {parts[0].rows, cols}));
    if (IsFp8(first, parts[0].name)) return ConcatFp8RowSlices(parts, cols, total);
  }
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(storage_dtype_, {total, cols}));
  auto* dst = static_cast<std::byte*>(t.raw_data());
  const size_t row_bytes = cols * DTypeSize(storage_dtype_);
  for (const RowSlice& p : parts) {
    if (p.begin < 0 || p.count < 0 || p.begin + p.count > p.rows) {
      return absl::InvalidArgumentError(absl::StrCat(dir(), ": tensor ", p.name, ": row slice [",
                                                     p.begin, ", ", p.begin + p.count, ") outside ",
                                                     p.rows, " rows"));
    }
    ASSIGN_OR_RETURN(model::TensorView view, View(p.name, {p.rows, cols}));
    if (view.dtype == storage_dtype_) {
      std::memcpy(dst, view.data.data() + p.begin * row_bytes, p.count * row_bytes);
    } else {
      ASSIGN_OR_RETURN(Tensor full, Tensor::Empty(storage_dtype_, {p.rows, cols}));
      RETURN_IF_ERROR(Convert(view, p.name, full.raw_data()));
      std::memcpy(dst, static_cast<const std::byte*>(full.raw_data()) + p.begin * row_bytes,
                  p.count * row_bytes);
    }
    ReleaseMappedPages(view.data);
    dst += p.count * row_bytes;
  }
  bytes_loaded_ += t.nbytes();
  return Prepare(std::move(t), false);
}

// fp8 parts stay fp8: their bytes are concatenated and so are their scales. When every part
// starts on a block row and all but the last fill whole block rows, the scale rows concatenate
// too; otherwise (a tensor-parallel slice through a block) each weight row gets its own scale
// row (block_rows 1), which costs 4 bytes per block_cols weights.
absl::StatusOr<Tensor> WeightLoader::ConcatFp8RowSlices(const std::vector<RowSlice>& parts,
                                                        int64_t cols, int64_t total) {
  const model::Fp8BlockSize block = Fp8Block(cols);
  const int64_t grid_cols = (cols + block.cols - 1) / block.cols;
  bool aligned = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    aligned &= parts[i].begin % block.rows == 0 && (last || parts[i].count % block.rows == 0);
  }
  const int64_t block_rows = aligned ? block.rows : 1;
  const int64_t grid_rows = (total + block_rows - 1) / block_rows;
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(DType::kF8E4M3, {total, cols}));
  ASSIGN_OR_RETURN(Tensor grid, Tensor::Empty(DType::kF32, {grid_rows, grid_cols}));
  int64_t row = 0;
  for (const RowSlice& p : parts) {
    if (p.begin < 0 || p.count < 0 || p.begin + p.count > p.rows) {
      return absl::InvalidArgumentError(absl::StrCat(dir(), ": tensor ", p.name, ": row slice [",
                                                     p.begin, ", ", p.begin + p.count, ") outside ",
                                                     p.rows, " rows"));
    }
    ASSIGN_OR_RETURN(model::TensorView view, View(p.name, {p.rows, cols}));
    if (!IsFp8(view, p.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir(), ": tensor ", p.name, " is ", std::string(DTypeName(view.dtype)),
                       " but is fused with fp8 tensors (", parts[0].name, ")"));
    }
    // The part as fp8 with its scales: the checkpoint's bytes, or quantized now.
    ASSIGN_OR_RETURN(Tensor part, Materialize(view, p.name, {p.rows, cols}));
    const kernels::BlockScales& scales = *part.block_scales();
    std::memcpy(t.data<uint8_t>() + row * cols, part.data<uint8_t>() + p.begin * cols,
                p.count * cols);
    const float* src = scales.scales->data<float>();
    float* dst = grid.data<float>();
    if (aligned) {
      const int64_t first = p.begin / block.rows;
      const int64_t n = (p.count + block.rows - 1) / block.rows;
      std::memcpy(dst + (row / block.rows) * grid_cols, src + first * grid_cols,
                  n * grid_cols * sizeof(float));
    } else {
      for (int64_t r = 0; r < p.count; ++r) {
        std::memcpy(dst + (row + r) * grid_cols, src + ((p.begin + r) / block.rows) * grid_cols,
                    grid_cols * sizeof(float));
      }
    }
    ReleaseMappedPages(view.data);
    row += p.count;
  }
  ASSIGN_OR_RETURN(t, t.WithBlockScales({.scales = std::make_shared<const Tensor>(std::move(grid)),
                                         .block_rows = block_rows,
                                         .block_cols = block.cols}));
  bytes_loaded_ += WeightBytes(t);
  return Prepare(std::move(t), false);
}

absl::StatusOr<Tensor> WeightLoader::GetOptional(std::string_view name,
                                                 std::vector<int64_t> shape) {
  if (!checkpoint_->Contains(name)) return Tensor();
  return Get(name, std::move(shape));
}

absl::StatusOr<std::vector<float>> WeightLoader::GetFloats(std::string_view name,
                                                           std::vector<int64_t> shape) {
  if (const model::LinearSpec* q4 = Int4Linear(name); q4 != nullptr) {
    if (shape != std::vector<int64_t>{q4->out, q4->in}) {
      return absl::InvalidArgumentError(absl::StrCat(dir(), ": int4 weight ", std::string(name),
                                                     " is ", ShapeStr({q4->out, q4->in}),
                                                     ", asked for as ", ShapeStr(shape)));
    }
    // (q - zero) * scale in fp32, in input-feature order.
    ASSIGN_OR_RETURN(Q4Window w, ReadQ4(*q4, 0, q4->out, 0, q4->in));
    std::vector<float> out(static_cast<size_t>(q4->out * q4->in));
    RETURN_IF_ERROR(DequantizeQ4Window(w, DType::kF32, out.data()));
    return out;
  }
  ASSIGN_OR_RETURN(model::TensorView view, View(name, shape));
  std::vector<float> out(static_cast<size_t>(view.NumElements()));
  if (view.dtype == DType::kF8E4M3) {
    RETURN_IF_ERROR(DequantizeFp8(view, name, DType::kF32, out.data()));
    return out;
  }
  for (size_t i = 0; i < out.size(); ++i) out[i] = FloatAt(view, static_cast<int64_t>(i));
  return out;
}

absl::StatusOr<Tensor> WeightLoader::GetF32(std::string_view name, std::vector<int64_t> shape) {
  ASSIGN_OR_RETURN(std::vector<float> values, GetFloats(name, shape));
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(DType::kF32, shape));
  std::memcpy(t.raw_data(), values.data(), values.size() * 4);
  bytes_loaded_ += t.nbytes();
  return Prepare(std::move(t), false);
}

absl::StatusOr<Tensor> WeightLoader::ConcatRows(const std::vector<std::string>& names,
                                                const std::vector<int64_t>& rows, int64_t cols) {
  std::vector<RowSlice> parts;
  for (size_t i = 0; i < names.size(); ++i) parts.push_back({names[i], rows[i], 0, rows[i]});
  return ConcatRowSlices(parts, cols);
}

absl::StatusOr<Tensor> WeightLoader::FromFloats(const std::vector<float>& values,
                                                std::vector<int64_t> shape) {
  // Values from an fp8 or int4 checkpoint (e4m3 or int4 times a scale) are not bf16 numbers:
  // keep them exact. They are rearrangements of small tensors (MLA's kv_b_proj), well under 1% of a
  // model.
  const DType dtype = config_.fp8_quantization.has_value() || config_.int4_quantization.has_value()
                          ? DType::kF32
                          : storage_dtype_;
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(dtype, shape));
  if (t.numel() != static_cast<int64_t>(values.size())) {
    return absl::InternalError("FromFloats: element count mismatch");
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kF32) {
      t.data<float>()[i] = values[i];
    } else {
      t.data<uint16_t>()[i] = FloatToBf16(values[i]);
    }
  }
  bytes_loaded_ += t.nbytes();
  return Prepare(std::move(t), false);
}

}  // namespace expertmesh::models
