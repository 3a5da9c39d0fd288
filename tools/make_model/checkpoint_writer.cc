#include "tools/make_model/checkpoint_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/safetensors/fp8_quantize.h"
#include "model/safetensors/int4_quantize.h"
#include "nlohmann/json.hpp"
#include "tools/make_model/weight_init.h"

namespace expertmesh::make_model {
namespace {

std::string ShardName(size_t index, size_t count) {
  char name[64];
  std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

// Bytes already computed, handed out piece by piece.
class BufferSource : public TensorSource {
 public:
  explicit BufferSource(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  void Fill(std::span<std::byte> out) override {
    std::memcpy(out.data(), bytes_.data() + offset_, out.size());
    offset_ += out.size();
  }

 private:
  std::vector<std::byte> bytes_;
  size_t offset_ = 0;
};

template <typename T>
std::vector<std::byte> RawBytes(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// `values` in `dtype` (F32, BF16 or F16), little-endian as safetensors stores them.
std::vector<std::byte> FloatBytes(const std::vector<float>& values, DType dtype) {
  if (dtype == DType::kF32) return RawBytes(values);
  std::vector<uint16_t> half(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    half[i] = dtype == DType::kF16 ? FloatToF16(values[i]) : FloatToBf16(values[i]);
  }
  return RawBytes(half);
}

// `value` as a `dtype` number (F32, BF16 or F16) would hold it.
float RoundTo(float value, DType dtype) {
  if (dtype == DType::kBF16) return Bf16ToFloat(FloatToBf16(value));
  if (dtype == DType::kF16) return F16ToFloat(FloatToF16(value));
  return value;
}

// Eight 4-bit values (0..15) in one word, value j in bits 4j..4j+3: compressed-tensors'
// pack_to_int32 and AutoGPTQ's pack both put the first value in the low bits.
int32_t PackEight(const uint8_t* values, size_t stride) {
  uint32_t word = 0;
  for (int j = 0; j < 8; ++j) word |= static_cast<uint32_t>(values[j * stride] & 0x0f) << (4 * j);
  return static_cast<int32_t>(word);
}

// The tensors of quantized Linear layers. The first tensor of a layer in the layout (its e4m3
// weight, weight_packed or qweight) triggers the quantization of the whole weight; the other
// parts (scales, zero points, ...), which the layout lists right after it, are kept until they
// are written.
class QuantizedSources {
 public:
  QuantizedSources(const model::ModelConfig& config, const std::vector<TensorToWrite>& tensors,
                   uint64_t seed, float init_std)
      : config_(config), seed_(seed), init_std_(init_std) {
    for (const TensorToWrite& t : tensors) dtypes_[t.name] = t.dtype;
    for (model::LinearSpec& linear : model::LinearLayers(config)) {
      std::string first;
      switch (linear.format) {
        case model::LinearFormat::kPlain:
          continue;
        case model::LinearFormat::kFp8Block:
        case model::LinearFormat::kFp8Channel:
          first = linear.module + ".weight";
          break;
        case model::LinearFormat::kInt4CompressedTensors:
          first = linear.module + ".weight_packed";
          break;
        case model::LinearFormat::kInt4Gptq:
          first = linear.module + ".qweight";
          break;
      }
      first_part_.emplace(std::move(first), std::move(linear));
    }
  }

  std::unique_ptr<TensorSource> Source(const TensorToWrite& t) {
    if (auto it = pending_.find(t.name); it != pending_.end()) {
      std::vector<std::byte> bytes = std::move(it->second);
      pending_.erase(it);
      return std::make_unique<BufferSource>(std::move(bytes));
    }
    if (auto it = first_part_.find(t.name); it != first_part_.end()) {
      return std::make_unique<BufferSource>(Quantize(it->second));
    }
    return MakeInitSource(t, seed_, init_std_);
  }

 private:
  // The values `<module>.weight` holds in the unquantized twin of this checkpoint.
  std::vector<float> TwinWeight(const model::LinearSpec& linear) const {
    std::vector<float> values(static_cast<size_t>(linear.out * linear.in));
    MakeInitSource({linear.module + ".weight", DType::kF32, {linear.out, linear.in}}, seed_,
                   init_std_)
        ->Fill({reinterpret_cast<std::byte*>(values.data()), values.size() * sizeof(float)});
    for (float& v : values) v = RoundTo(v, config_.torch_dtype);
    return values;
  }

  DType DTypeOf(const std::string& name) const {
    auto it = dtypes_.find(name);
    return it == dtypes_.end() ? DType::kF32 : it->second;
  }

  // The first tensor's bytes; the others go to pending_.
  std::vector<std::byte> Quantize(const model::LinearSpec& linear) {
    const std::vector<float> values = TwinWeight(linear);
    const int64_t out = linear.out, in = linear.in;
    const std::string& m = linear.module;
    // CheckQuantizable ran before writing and the drawn values are finite: the quantizers'
    // statuses are always ok.
    const auto check = [](const absl::Status& s) {
      if (!s.ok()) {
        std::fprintf(stderr, "make-model: %s\n", s.ToString().c_str());
        std::abort();
      }
    };
    switch (linear.format) {
      case model::LinearFormat::kPlain:
        break;
      case model::LinearFormat::kFp8Block: {
        const model::Fp8BlockSize block{config_.fp8_quantization->block_rows,
                                        config_.fp8_quantization->block_cols};
        std::vector<uint8_t> q(values.size());
        std::vector<float> scales(static_cast<size_t>(((out + block.rows - 1) / block.rows) *
                                                      ((in + block.cols - 1) / block.cols)));
        check(model::QuantizeFp8Blocks(values, out, in, block, q, scales));
        pending_[m + ".weight_scale_inv"] = FloatBytes(scales, DTypeOf(m + ".weight_scale_inv"));
        return RawBytes(q);
      }
      case model::LinearFormat::kFp8Channel: {
        // llm-compressor's FP8 channel quantization: the scale is rounded to its stored dtype
        // first and the weight divided by that, so stored values times stored scales are what
        // the reference dequantizes.
        const DType scale_dtype = DTypeOf(m + ".weight_scale");
        std::vector<uint8_t> q(values.size());
        std::vector<float> scales(static_cast<size_t>(out));
        for (int64_t r = 0; r < out; ++r) {
          const float* row = values.data() + r * in;
          float amax = 0;
          for (int64_t c = 0; c < in; ++c) amax = std::max(amax, std::fabs(row[c]));
          const float scale = RoundTo(amax > 0 ? amax / model::kFp8E4M3Max : 1.0f, scale_dtype);
          scales[r] = scale;
          // FloatToF8E4M3 rounds to nearest even and saturates at 448, as torch's clamp to
          // +-448 followed by the cast to float8_e4m3fn does.
          for (int64_t c = 0; c < in; ++c) q[r * in + c] = FloatToF8E4M3(row[c] / scale);
        }
        pending_[m + ".weight_scale"] = FloatBytes(scales, scale_dtype);
        return RawBytes(q);
      }
      case model::LinearFormat::kInt4CompressedTensors:
      case model::LinearFormat::kInt4Gptq: {
        const bool gptq = linear.format == model::LinearFormat::kInt4Gptq;
        const int64_t group = config_.int4_quantization->group_size;
        const int64_t groups = in / group;
        const std::string scale_name = m + (gptq ? ".scales" : ".weight_scale");
        const DType scale_dtype = DTypeOf(scale_name);
        std::vector<uint8_t> q(values.size());  // [out, in], 0..15 around zero 8
        std::vector<float> scales(static_cast<size_t>(out * groups));  // [out, groups]
        check(model::QuantizeInt4Groups(values, out, in, group, scale_dtype, q, scales));
        if (!gptq) {
          std::vector<int32_t> packed(static_cast<size_t>(out * (in / 8)));
          for (int64_t r = 0; r < out; ++r) {
            for (int64_t k = 0; k < in / 8; ++k) {
              packed[r * (in / 8) + k] = PackEight(&q[r * in + 8 * k], 1);
            }
          }
          pending_[scale_name] = FloatBytes(scales, scale_dtype);
          pending_[m + ".weight_shape"] = RawBytes(std::vector<int64_t>{out, in});
          return RawBytes(packed);
        }
        // AutoGPTQ's layout is transposed: input rows down, output columns across.
        std::vector<int32_t> qweight(static_cast<size_t>((in / 8) * out));
        for (int64_t k = 0; k < in / 8; ++k) {
          for (int64_t c = 0; c < out; ++c) {
            qweight[k * out + c] = PackEight(&q[c * in + 8 * k], 1);
          }
        }
        // Symmetric: every zero point is 8; checkpoint_format "gptq" (v1) stores it minus one.
        const uint8_t zero = config_.int4_quantization->gptq_zero_minus_one ? 7 : 8;
        const std::vector<uint8_t> zeros(8, zero);
        std::vector<int32_t> qzeros(static_cast<size_t>(groups * (out / 8)),
                                    PackEight(zeros.data(), 1));
        std::vector<float> scales_t(scales.size());  // [groups, out]
        for (int64_t r = 0; r < out; ++r) {
          for (int64_t g = 0; g < groups; ++g) scales_t[g * out + r] = scales[r * groups + g];
        }
        std::vector<int32_t> g_idx(static_cast<size_t>(in));
        for (int64_t i = 0; i < in; ++i) g_idx[i] = static_cast<int32_t>(i / group);
        pending_[m + ".qzeros"] = RawBytes(qzeros);
        pending_[scale_name] = FloatBytes(scales_t, scale_dtype);
        pending_[m + ".g_idx"] = RawBytes(g_idx);
        return RawBytes(qweight);
      }
    }
    return {};
  }

  const model::ModelConfig& config_;
  uint64_t seed_;
  float init_std_;
  absl::flat_hash_map<std::string, DType> dtypes_;
  absl::flat_hash_map<std::string, model::LinearSpec> first_part_;
  absl::flat_hash_map<std::string, std::vector<std::byte>> pending_;
};

}  // namespace

std::vector<std::vector<TensorToWrite>> PlanShards(const std::vector<TensorToWrite>& tensors,
                                                   uint64_t shard_size) {
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t current = 0;
  for (const TensorToWrite& t : tensors) {
    const uint64_t bytes = t.NumBytes();
    if (shard_size > 0 && !shards.back().empty() && current + bytes > shard_size) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(t);
    current += bytes;
  }
  return shards;
}

std::vector<TensorToWrite> TensorsToWrite(const model::ModelConfig& config) {
  std::vector<TensorToWrite> tensors;
  for (const model::TensorSpec& spec : model::ExpectedTensors(config)) {
    if (spec.optional && !spec.name.ends_with(".g_idx")) continue;
    tensors.push_back({spec.name, model::CheckpointDType(spec, config.torch_dtype), spec.shape});
  }
  return tensors;
}

absl::Status CheckQuantizable(const model::ModelConfig& config) {
  if (config.int4_quantization.has_value()) {
    const model::Int4Quantization& q = *config.int4_quantization;
    if (!q.symmetric) {
      return absl::InvalidArgumentError("make-model writes symmetric int4 only (sym: true)");
    }
    if (q.act_order) {
      return absl::InvalidArgumentError(
          "make-model writes GPTQ without act-order (desc_act: false)");
    }
  }
  for (const model::LinearSpec& linear : model::LinearLayers(config)) {
    const bool gptq = linear.format == model::LinearFormat::kInt4Gptq;
    if (!gptq && linear.format != model::LinearFormat::kInt4CompressedTensors) continue;
    const int64_t group = config.int4_quantization->group_size;
    if (linear.in % group != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("int4 group size ", group, " does not divide the ", linear.in,
                       " input features of ", linear.module, " [", linear.out, ", ", linear.in,
                       "]: choose widths that are multiples of it, or another --group-size"));
    }
    if (gptq && linear.out % 8 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("GPTQ packs 8 output columns per qzeros word, but ", linear.module, " has ",
                       linear.out, " outputs (not a multiple of 8)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointSummary> WriteCheckpoint(const std::string& dir,
                                                  const model::ModelConfig& config, uint64_t seed,
                                                  float init_std, uint64_t shard_size) {
  RETURN_IF_ERROR(CheckQuantizable(config));
  const std::vector<TensorToWrite> tensors = TensorsToWrite(config);
  CheckpointSummary summary;
  for (const TensorToWrite& t : tensors) summary.total_bytes += t.NumBytes();
  for (const model::TensorSpec& spec : model::ExpectedTensors(config)) {
    if (!spec.optional) summary.num_parameters += spec.Parameters();
  }
  QuantizedSources quantized(config, tensors, seed, init_std);
  const auto sources = [&](const TensorToWrite& t) { return quantized.Source(t); };
  if (shard_size == 0) {
    RETURN_IF_ERROR(WriteSafetensorsFile(dir + "/model.safetensors", tensors, sources));
    summary.files.push_back("model.safetensors");
    return summary;
  }
  const std::vector<std::vector<TensorToWrite>> shards = PlanShards(tensors, shard_size);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name = ShardName(i, shards.size());
    RETURN_IF_ERROR(WriteSafetensorsFile(dir + "/" + name, shards[i], sources));
    for (const TensorToWrite& t : shards[i]) weight_map[t.name] = name;
    summary.files.push_back(name);
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", summary.total_bytes}};
  index["weight_map"] = std::move(weight_map);
  RETURN_IF_ERROR(WriteStringToFile(dir + "/model.safetensors.index.json", index.dump(2) + "\n"));
  summary.files.push_back("model.safetensors.index.json");
  return summary;
}

}  // namespace expertmesh::make_model
