// Writes the tensors of a checkpoint with seeded random values (weight_init.h), as one
// model.safetensors or as shards plus the model.safetensors.index.json that transformers reads.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_CHECKPOINT_WRITER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_CHECKPOINT_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "model/config/weight_layout.h"
#include "tools/make_model/safetensors_writer.h"

namespace expertmesh::make_model {

struct CheckpointSummary {
  std::vector<std::string> files;  // relative to the directory, index last when sharded
  uint64_t total_bytes = 0;        // tensor bytes (the index's metadata.total_size)
  int64_t num_parameters = 0;
};

// Groups tensors into shards in order, starting a new shard when the next tensor would take
// the current one past `shard_size` bytes (a tensor larger than that gets a shard of its own).
// shard_size == 0 means one shard.
std::vector<std::vector<TensorToWrite>> PlanShards(const std::vector<TensorToWrite>& tensors,
                                                   uint64_t shard_size);

// The on-disk tensors for `specs` in a checkpoint of `dtype` (fp32 exceptions kept). With
// kF8E4M3 the specs' fp8 weights are e4m3 (with f32 `_scale_inv`) and the rest bf16.
// INVALID_ARGUMENT when the specs' fp8 layout and `dtype` disagree.
absl::StatusOr<std::vector<TensorToWrite>> TensorsToWrite(
    const std::vector<model::TensorSpec>& specs, DType dtype);

// Writes `tensors` into `dir`. Errors: those of WriteSafetensorsFile and WriteStringToFile.
absl::StatusOr<CheckpointSummary> WriteCheckpoint(const std::string& dir,
                                                  const std::vector<TensorToWrite>& tensors,
                                                  uint64_t seed, float init_std,
                                                  uint64_t shard_size);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_CHECKPOINT_WRITER_H_
