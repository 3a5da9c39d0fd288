// Writes the tensors of a checkpoint with seeded random values (weight_init.h), as one
// model.safetensors or as shards plus the model.safetensors.index.json that transformers reads.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_CHECKPOINT_WRITER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_CHECKPOINT_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "tools/make_model/safetensors_writer.h"

namespace expertmesh::make_model {

struct CheckpointSummary {
  std::vector<std::string> files;  // relative to the directory, index last when sharded
  uint64_t total_bytes = 0;        // tensor bytes (the index's metadata.total_size)
  int64_t num_parameters = 0;      // weight parameters (model::TensorSpec::Parameters)
};

// Groups tensors into shards in order, starting a new shard when the next tensor would take
// the current one past `shard_size` bytes (a tensor larger than that gets a shard of its own).
// shard_size == 0 means one shard.
std::vector<std::vector<TensorToWrite>> PlanShards(const std::vector<TensorToWrite>& tensors,
                                                   uint64_t shard_size);

// The on-disk tensors of model::ExpectedTensors(config), each in model::CheckpointDType with
// config.torch_dtype for floating-point tensors (so quantization scales are stored in the model
// dtype, as llm-compressor writes them, except GPTQ's F16 scales and fp8 blocks' F32). Optional
// specs are left out except GPTQ's g_idx, which AutoGPTQ always saves (the bias of zeros it may
// add to a Linear that has none is not written).
std::vector<TensorToWrite> TensorsToWrite(const model::ModelConfig& config);

// OK when WriteCheckpoint can write every quantized Linear of `config`: int4 rows made of whole
// groups (and, GPTQ, output widths that are multiples of 8, which qzeros packs), symmetric
// int4 without GPTQ act-order. INVALID_ARGUMENT naming the first module that cannot be written.
absl::Status CheckQuantizable(const model::ModelConfig& config);

// Writes TensorsToWrite(config) into `dir`. Every tensor takes seeded random values
// (weight_init.h); a quantized Linear (model::LinearLayers(config)) is the weight its unquantized
// twin holds (same seed, same name `<module>.weight`, rounded to config.torch_dtype) quantized
// as its format's reference tools do, so the checkpoint equals that twin quantized:
//  - fp8 blocks: model::QuantizeFp8Blocks with the config's block size, F32 `_scale_inv`;
//  - fp8 per channel: scale = amax / 448 per output row (1 for a row of zeros) rounded to the
//    scale's dtype, then e4m3(value / scale) rounded to nearest even; `weight_scale` [out, 1];
//  - int4 (compressed-tensors and GPTQ): model::QuantizeInt4Groups with scales rounded to the
//    dtype they are stored in, packed as compressed-tensors' pack_to_int32 (weight_packed
//    [out, in/8], input column 8k + j in bits 4j of word k; weight_shape [out, in] I64) or as
//    AutoGPTQ's QuantLinear.pack (qweight [in/8, out], input row 8k + j in bits 4j; qzeros
//    [in/G, out/8], output column 8c + j in bits 4j, zero 8 stored as 7 in v1 "gptq", as 8 in
//    "gptq_v2"; scales [in/G, out]; g_idx[i] = i / G).
// Errors: those of CheckQuantizable, WriteSafetensorsFile and WriteStringToFile.
absl::StatusOr<CheckpointSummary> WriteCheckpoint(const std::string& dir,
                                                  const model::ModelConfig& config, uint64_t seed,
                                                  float init_std, uint64_t shard_size);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_CHECKPOINT_WRITER_H_
