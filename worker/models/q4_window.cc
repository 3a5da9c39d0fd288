#include "worker/models/q4_window.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "kernels/q4_layout.h"

namespace expertmesh::models {
namespace {

using kernels::Tensor;

std::string ShapeStr(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

using model::FloatAt;

uint32_t WordAt(const model::TensorView& view, int64_t i) {
  uint32_t word;
  std::memcpy(&word, view.data.data() + 4 * i, 4);
  return word;
}

int64_t IntAt(const model::TensorView& view, int64_t i) {
  if (view.dtype == DType::kI64) {
    int64_t v;
    std::memcpy(&v, view.data.data() + 8 * i, 8);
    return v;
  }
  return static_cast<int32_t>(WordAt(view, i));
}

uint8_t Nibble(uint32_t word, int64_t j) { return static_cast<uint8_t>((word >> (4 * j)) & 0xf); }

// Reads the checkpoint tensors of one int4 Linear, with errors naming them.
// Reads one Linear's tensors. Once the window is repacked they are not needed again, so the
// mapped pages it read are released when the reader goes (ReleaseMappedPages): the resident set
// then holds the repacked copy, not both.
class Reader {
 public:
  Reader(const model::Checkpoint& checkpoint, const model::LinearSpec& linear)
      : checkpoint_(checkpoint), linear_(linear) {}
  ~Reader() {
    for (std::span<const std::byte> bytes : read_) ReleaseMappedPages(bytes);
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  template <typename... Args>
  absl::Status Bad(const Args&... what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(checkpoint_.dir(), ": int4 weight ", linear_.module, ".weight: ", what...));
  }

  // `<module>.<suffix>` with exactly `shape`, in one of `dtypes`.
  absl::StatusOr<model::TensorView> Get(const std::string& suffix,
                                        const std::vector<int64_t>& shape,
                                        std::initializer_list<DType> dtypes,
                                        const std::string& why_shape = "") const {
    const std::string name = absl::StrCat(linear_.module, ".", suffix);
    if (!checkpoint_.Contains(name)) return Bad(name, " is missing");
    ASSIGN_OR_RETURN(model::TensorView view, checkpoint_.Get(name));
    if (view.shape != shape) {
      return Bad(name, " has shape ", ShapeStr(view.shape), ", ",
                 why_shape.empty() ? "expected " : why_shape, ShapeStr(shape));
    }
    if (std::find(dtypes.begin(), dtypes.end(), view.dtype) == dtypes.end()) {
      std::vector<std::string> names;
      for (DType d : dtypes) names.emplace_back(DTypeName(d));
      return Bad(name, " has dtype ", std::string(DTypeName(view.dtype)), " (expected ",
                 absl::StrJoin(names, " or "), ")");
    }
    read_.push_back(view.data);
    return view;
  }

  const model::LinearSpec& linear() const { return linear_; }

 private:
  const model::Checkpoint& checkpoint_;
  const model::LinearSpec& linear_;
  mutable std::vector<std::span<const std::byte>> read_;
};

constexpr std::initializer_list<DType> kFloats = {DType::kBF16, DType::kF16, DType::kF32};

}  // namespace

absl::StatusOr<Q4Window> ReadQ4Window(const model::Checkpoint& checkpoint,
                                      const model::Int4Quantization& quantization,
                                      const model::LinearSpec& linear, int64_t row_begin,
                                      int64_t rows, int64_t col_begin, int64_t cols) {
  Reader r(checkpoint, linear);
  const int64_t out = linear.out, in = linear.in, group = quantization.group_size;
  if (row_begin < 0 || rows < 0 || row_begin + rows > out || col_begin < 0 || cols < 0 ||
      col_begin + cols > in) {
    return r.Bad("window rows [", row_begin, ", ", row_begin + rows, ") x columns [", col_begin,
                 ", ", col_begin + cols, ") is outside ", ShapeStr({out, in}));
  }
  if (group <= 0 || in % group != 0) {
    return r.Bad("group size ", group, " does not divide the row of ", in, " values");
  }
  const int64_t num_groups = in / group;
  Q4Window w;
  w.name = linear.module + ".weight";
  w.rows = rows;
  w.cols = cols;
  w.group_size = group;
  w.q.resize(static_cast<size_t>(rows * cols));
  // The stored column of each window column (input features, before any act-order sort).
  std::vector<int32_t> feature(static_cast<size_t>(cols));
  std::iota(feature.begin(), feature.end(), static_cast<int32_t>(col_begin));
  std::vector<float> grid_scales;  // [rows, num_groups] over the whole row
  std::vector<float> grid_zeros;   // same; empty when every zero point is 8

  if (linear.format == model::LinearFormat::kInt4CompressedTensors) {
    ASSIGN_OR_RETURN(model::TensorView shape,
                     r.Get("weight_shape", {2}, {DType::kI64, DType::kI32}));
    if (IntAt(shape, 0) != out || IntAt(shape, 1) != in) {
      return r.Bad(linear.module, ".weight_shape is [", IntAt(shape, 0), ", ", IntAt(shape, 1),
                   "], the config implies ", ShapeStr({out, in}));
    }
    ASSIGN_OR_RETURN(model::TensorView packed,
                     r.Get("weight_packed", {out, in / 8}, {DType::kI32}));
    ASSIGN_OR_RETURN(model::TensorView scale, r.Get("weight_scale", {out, num_groups}, kFloats,
                                                    absl::StrCat("groups of ", group, " along ",
                                                                 ShapeStr({out, in}), " need ")));
    grid_scales.resize(static_cast<size_t>(rows * num_groups));
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t g = 0; g < num_groups; ++g) {
        grid_scales[i * num_groups + g] = FloatAt(scale, (row_begin + i) * num_groups + g);
      }
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t c = col_begin + j;
        w.q[i * cols + j] = Nibble(WordAt(packed, (row_begin + i) * (in / 8) + c / 8), c % 8);
      }
    }
  } else if (linear.format == model::LinearFormat::kInt4Gptq) {
    if (out % 8 != 0) return r.Bad("GPTQ needs a multiple of 8 outputs, not ", out);
    ASSIGN_OR_RETURN(model::TensorView qweight, r.Get("qweight", {in / 8, out}, {DType::kI32}));
    ASSIGN_OR_RETURN(model::TensorView qzeros, r.Get("qzeros", {num_groups, out / 8}, {DType::kI32},
                                                     absl::StrCat("groups of ", group, " along ",
                                                                  ShapeStr({out, in}), " need ")));
    ASSIGN_OR_RETURN(model::TensorView scales, r.Get("scales", {num_groups, out}, kFloats,
                                                     absl::StrCat("groups of ", group, " along ",
                                                                  ShapeStr({out, in}), " need ")));
    // g_idx: the group of each input feature. Trivial (feature / group) unless act-order.
    std::vector<int32_t> g_idx(static_cast<size_t>(in));
    for (int64_t i = 0; i < in; ++i) g_idx[i] = static_cast<int32_t>(i / group);
    if (checkpoint.Contains(linear.module + ".g_idx")) {
      ASSIGN_OR_RETURN(model::TensorView view, r.Get("g_idx", {in}, {DType::kI32, DType::kI64}));
      for (int64_t i = 0; i < in; ++i) {
        const int64_t g = IntAt(view, i);
        if (g < 0 || g >= num_groups) {
          return r.Bad(linear.module, ".g_idx element ", i, " is ", g, ", outside the ", num_groups,
                       " groups [0, ", num_groups, ")");
        }
        g_idx[i] = static_cast<int32_t>(g);
      }
    } else if (quantization.act_order) {
      return r.Bad(linear.module, ".g_idx is missing (desc_act is true)");
    }
    bool trivial = true;
    for (int64_t i = 0; i < in && trivial; ++i) trivial = g_idx[i] == i / group;
    if (!trivial) {
      // Act-order: sort the features by group, stably, so each group is contiguous.
      std::vector<int32_t> order(static_cast<size_t>(in));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return g_idx[a] < g_idx[b]; });
      for (int64_t j = 0; j < in; ++j) {
        if (g_idx[order[j]] != j / group) {
          std::vector<int64_t> count(static_cast<size_t>(num_groups), 0);
          for (int32_t g : g_idx) ++count[g];
          const int64_t uneven =
              std::find_if(count.begin(), count.end(), [&](int64_t n) { return n != group; }) -
              count.begin();
          return r.Bad(linear.module, ".g_idx gives group ", uneven, " ", count[uneven],
                       " input features, not the group size ", group);
        }
      }
      if (col_begin != 0 || cols != in) {
        return absl::UnimplementedError(absl::StrCat(
            checkpoint.dir(), ": int4 weight ", w.name,
            ": GPTQ act-order (desc_act, a shuffled g_idx) cannot be split along the input "
            "dimension, and this shard needs input columns [",
            col_begin, ", ", col_begin + cols, ") of ", in,
            "; load it without tensor parallelism or use a checkpoint without desc_act"));
      }
      feature = order;
      w.column_order = order;
    }
    grid_scales.resize(static_cast<size_t>(rows * num_groups));
    grid_zeros.resize(static_cast<size_t>(rows * num_groups));
    const int plus = quantization.gptq_zero_minus_one ? 1 : 0;
    bool all_eight = true;
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t o = row_begin + i;
      for (int64_t g = 0; g < num_groups; ++g) {
        grid_scales[i * num_groups + g] = FloatAt(scales, g * out + o);
        const float zero =
            static_cast<float>(Nibble(WordAt(qzeros, g * (out / 8) + o / 8), o % 8) + plus);
        grid_zeros[i * num_groups + g] = zero;
        all_eight &= zero == kernels::kQ4SymmetricZero;
      }
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t f = feature[j];
        w.q[i * cols + j] = Nibble(WordAt(qweight, (f / 8) * out + o), f % 8);
      }
    }
    if (all_eight) grid_zeros.clear();
    // AutoGPTQ writes a bias for every Linear, zeros where the model has none: accept those.
    const std::string bias_name = linear.module + ".bias";
    if (!linear.bias && checkpoint.Contains(bias_name)) {
      ASSIGN_OR_RETURN(model::TensorView bias, r.Get("bias", {out}, kFloats));
      for (int64_t i = 0; i < out; ++i) {
        if (FloatAt(bias, i) != 0) {
          return r.Bad(bias_name, " element ", i, " is ", FloatAt(bias, i),
                       ", but the architecture has no bias there (only a bias of zeros, as "
                       "AutoGPTQ writes, is accepted)");
        }
      }
    }
  } else {
    return absl::InternalError(absl::StrCat(w.name, " is not an int4 Linear"));
  }

  for (size_t i = 0; i < grid_scales.size(); ++i) {
    if (!std::isfinite(grid_scales[i])) {
      return r.Bad("scale of row ", row_begin + static_cast<int64_t>(i) / num_groups, ", group ",
                   static_cast<int64_t>(i) % num_groups, " is ", grid_scales[i],
                   " (scales must be finite)");
    }
  }
  // The window's part of the grid: the groups its (sorted) columns fall in.
  w.first_group = col_begin / group;
  w.col_offset = col_begin % group;
  w.groups = cols == 0 ? 0 : (col_begin + cols - 1) / group - w.first_group + 1;
  w.scales.resize(static_cast<size_t>(rows * w.groups));
  if (!grid_zeros.empty()) w.zeros.resize(w.scales.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < w.groups; ++k) {
      w.scales[i * w.groups + k] = grid_scales[i * num_groups + w.first_group + k];
      if (!grid_zeros.empty())
        w.zeros[i * w.groups + k] = grid_zeros[i * num_groups + w.first_group + k];
    }
  }
  return w;
}

absl::StatusOr<Q4Window> ConcatQ4Rows(std::vector<Q4Window> parts) {
  if (parts.empty()) return absl::InvalidArgumentError("ConcatQ4Rows: no parts");
  Q4Window out = std::move(parts[0]);
  const bool any_zeros =
      std::any_of(parts.begin(), parts.end(), [](const Q4Window& p) { return !p.zeros.empty(); });
  if (any_zeros && out.zeros.empty())
    out.zeros.assign(out.scales.size(), kernels::kQ4SymmetricZero);
  for (size_t i = 1; i < parts.size(); ++i) {
    Q4Window& p = parts[i];
    if (p.cols != out.cols || p.group_size != out.group_size || p.first_group != out.first_group ||
        p.col_offset != out.col_offset) {
      return absl::InvalidArgumentError(absl::StrCat("int4 weights ", out.name, " and ", p.name,
                                                     " have different columns or groups and "
                                                     "cannot be fused"));
    }
    if (p.column_order != out.column_order) {
      // GPTQ orders the columns of weights that share an input alike (the order comes from the
      // input's Hessian), so gate_proj and up_proj normally agree.
      return absl::UnimplementedError(
          absl::StrCat("int4 weights ", out.name, " and ", p.name,
                       " have different act-order column orders (g_idx) and cannot be fused"));
    }
    out.q.insert(out.q.end(), p.q.begin(), p.q.end());
    out.scales.insert(out.scales.end(), p.scales.begin(), p.scales.end());
    if (any_zeros) {
      if (p.zeros.empty()) p.zeros.assign(p.scales.size(), kernels::kQ4SymmetricZero);
      out.zeros.insert(out.zeros.end(), p.zeros.begin(), p.zeros.end());
    }
    out.rows += p.rows;
  }
  return out;
}

void PadQ4Rows(Q4Window& w, int64_t total_rows) {
  if (total_rows <= w.rows) return;
  const size_t pad = static_cast<size_t>(total_rows - w.rows);
  w.q.insert(w.q.end(), pad * w.cols, static_cast<uint8_t>(kernels::kQ4SymmetricZero));
  w.scales.insert(w.scales.end(), pad * w.groups, 0.0f);
  if (!w.zeros.empty()) {
    w.zeros.insert(w.zeros.end(), pad * w.groups, static_cast<float>(kernels::kQ4SymmetricZero));
  }
  w.rows = total_rows;
}

absl::StatusOr<Tensor> PackQ4Window(const Q4Window& w) {
  if (w.cols % kernels::kQ4Unit != 0 || w.col_offset % kernels::kQ4Unit != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("int4 weight ", w.name, ": a slice of ", w.cols, " columns starting ",
                     w.col_offset, " columns into a group of ", w.group_size,
                     " does not start and end on multiples of 32, as the q4 kernels read them"));
  }
  ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(DType::kQ4, {w.rows, w.cols}));
  uint8_t* packed = t.data<uint8_t>();
  for (int64_t r = 0; r < w.rows; ++r) {
    kernels::PackQ4Row(w.q.data() + r * w.cols, w.cols, packed + r * (w.cols / 2));
  }
  kernels::BlockScales scales;
  ASSIGN_OR_RETURN(Tensor grid, Tensor::Empty(DType::kF32, {w.rows, w.groups}));
  std::memcpy(grid.raw_data(), w.scales.data(), w.scales.size() * sizeof(float));
  scales.scales = std::make_shared<const Tensor>(std::move(grid));
  if (!w.zeros.empty()) {
    ASSIGN_OR_RETURN(Tensor zeros, Tensor::Empty(DType::kF32, {w.rows, w.groups}));
    std::memcpy(zeros.raw_data(), w.zeros.data(), w.zeros.size() * sizeof(float));
    scales.zero_points = std::make_shared<const Tensor>(std::move(zeros));
  }
  if (!w.column_order.empty()) {
    ASSIGN_OR_RETURN(Tensor order, Tensor::Empty(DType::kI32, {w.cols}));
    std::memcpy(order.raw_data(), w.column_order.data(), w.column_order.size() * sizeof(int32_t));
    scales.column_order = std::make_shared<const Tensor>(std::move(order));
  }
  scales.block_rows = 1;
  scales.block_cols = w.group_size;
  scales.col_offset = w.col_offset;
  return t.WithBlockScales(std::move(scales));
}

absl::Status DequantizeQ4Window(const Q4Window& w, DType dtype, void* out) {
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 weight ", w.name, ": cannot dequantize to ", std::string(DTypeName(dtype))));
  }
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t j = 0; j < w.cols; ++j) {
      const int64_t k = (w.col_offset + j) / w.group_size;
      const float zero = w.zeros.empty() ? static_cast<float>(kernels::kQ4SymmetricZero)
                                         : w.zeros[r * w.groups + k];
      const float value =
          (static_cast<float>(w.q[r * w.cols + j]) - zero) * w.scales[r * w.groups + k];
      const int64_t c = w.column_order.empty() ? j : w.column_order[j];
      if (dtype == DType::kF32) {
        static_cast<float*>(out)[r * w.cols + c] = value;
      } else {
        static_cast<uint16_t*>(out)[r * w.cols + c] = FloatToBf16(value);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::models
