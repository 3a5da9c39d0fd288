#include "tools/make_model/checkpoint_writer.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/safetensors/fp8_quantize.h"
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

// The tensors of an fp8 checkpoint: a weight takes the values its bf16 twin (same seed) holds,
// quantized in 128 x 128 blocks (model/safetensors/fp8_quantize.h), so the checkpoint equals the
// bf16 twin quantized at load (`--quantize fp8`) byte for byte; its
// `_scale_inv`, which the layout lists right after it, is kept until that tensor is written.
class Fp8Sources {
 public:
  Fp8Sources(uint64_t seed, float init_std) : seed_(seed), init_std_(init_std) {}

  bool Has(const std::string& name) const { return scales_.contains(name); }

  std::unique_ptr<TensorSource> Source(const TensorToWrite& t) {
    if (auto it = scales_.find(t.name); it != scales_.end()) {
      std::vector<std::byte> bytes(it->second.size() * sizeof(float));
      std::memcpy(bytes.data(), it->second.data(), bytes.size());
      scales_.erase(it);
      return std::make_unique<BufferSource>(std::move(bytes));
    }
    const int64_t rows = t.shape.at(0), cols = t.shape.at(1);
    std::vector<float> values(static_cast<size_t>(rows * cols));
    MakeInitSource({t.name, DType::kF32, t.shape}, seed_, init_std_)
        ->Fill({reinterpret_cast<std::byte*>(values.data()), values.size() * sizeof(float)});
    for (float& v : values) v = Bf16ToFloat(FloatToBf16(v));
    const model::Fp8BlockSize block{128, 128};
    std::vector<std::byte> bytes(values.size());
    std::vector<float> scales(static_cast<size_t>(((rows + block.rows - 1) / block.rows) *
                                                  ((cols + block.cols - 1) / block.cols)));
    // Drawn values are finite and the sizes match by construction: the status is always ok.
    const absl::Status s =
        model::QuantizeFp8Blocks(values, rows, cols, block,
                                 {reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()}, scales);
    if (!s.ok()) std::abort();
    scales_[t.name + "_scale_inv"] = std::move(scales);
    return std::make_unique<BufferSource>(std::move(bytes));
  }

 private:
  uint64_t seed_;
  float init_std_;
  absl::flat_hash_map<std::string, std::vector<float>> scales_;
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

absl::StatusOr<std::vector<TensorToWrite>> TensorsToWrite(
    const std::vector<model::TensorSpec>& specs, DType dtype) {
  // An fp8 checkpoint holds its unquantized tensors in bf16, as DeepSeek-V3 does.
  const DType plain = dtype == DType::kF8E4M3 ? DType::kBF16 : dtype;
  std::vector<TensorToWrite> tensors;
  tensors.reserve(specs.size());
  bool any_fp8 = false;
  for (const model::TensorSpec& spec : specs) {
    if (spec.fp8_block_quantized && dtype != DType::kF8E4M3) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", spec.name, " is fp8 in the config's layout (quantization_config)",
                       " but the checkpoint dtype is ", std::string(DTypeName(dtype))));
    }
    any_fp8 |= spec.fp8_block_quantized;
    tensors.push_back({spec.name, model::CheckpointDType(spec, plain), spec.shape});
  }
  if (dtype == DType::kF8E4M3 && !any_fp8) {
    return absl::InvalidArgumentError("an fp8 checkpoint needs a config with quantization_config");
  }
  return tensors;
}

absl::StatusOr<CheckpointSummary> WriteCheckpoint(const std::string& dir,
                                                  const std::vector<TensorToWrite>& tensors,
                                                  uint64_t seed, float init_std,
                                                  uint64_t shard_size) {
  CheckpointSummary summary;
  for (const TensorToWrite& t : tensors) {
    summary.total_bytes += t.NumBytes();
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    summary.num_parameters += n;
  }
  Fp8Sources fp8(seed, init_std);
  const auto sources = [&](const TensorToWrite& t) -> std::unique_ptr<TensorSource> {
    if (t.dtype == DType::kF8E4M3 || fp8.Has(t.name)) return fp8.Source(t);
    return MakeInitSource(t, seed, init_std);
  };
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
