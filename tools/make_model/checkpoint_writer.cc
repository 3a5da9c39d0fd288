#include "tools/make_model/checkpoint_writer.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tools/make_model/weight_init.h"

namespace expertmesh::make_model {
namespace {

std::string ShardName(size_t index, size_t count) {
  char name[64];
  std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

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
  std::vector<TensorToWrite> tensors;
  tensors.reserve(specs.size());
  for (const model::TensorSpec& spec : specs) {
    if (spec.fp8_block_quantized) {
      return absl::InvalidArgumentError(
          absl::StrCat("make-model does not write fp8 checkpoints (tensor ", spec.name, ")"));
    }
    tensors.push_back({spec.name, model::CheckpointDType(spec, dtype), spec.shape});
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
  const auto sources = [&](const TensorToWrite& t) { return MakeInitSource(t, seed, init_std); };
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
