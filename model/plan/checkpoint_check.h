// Checks a checkpoint against the tensors its config implies (ExpectedTensors). Lives in
// model/plan so that model/safetensors does not depend on model/config.
#ifndef EXPERTMESH_MODEL_PLAN_CHECKPOINT_CHECK_H_
#define EXPERTMESH_MODEL_PLAN_CHECKPOINT_CHECK_H_

#include "absl/status/status.h"
#include "model/config/model_config.h"
#include "model/safetensors/checkpoint.h"

namespace expertmesh::model {

// OK when every expected tensor (optional ones aside) exists with its exact shape and storage
// dtype (CheckpointDTypeMatches(spec, config.torch_dtype, ...)) and no unexpected tensor is
// present.
// Tolerated extras: layers numbered >= num_hidden_layers (DeepSeek-V3's MTP module, which
// transformers ignores too) and legacy `rotary_emb.inv_freq` buffers.
// INVALID_ARGUMENT naming the checkpoint directory, the tensor and the problem: the first
// missing tensor (with the count of all missing), a shape mismatch, a dtype mismatch, or an
// unexpected tensor.
absl::Status CheckCheckpointAgainstConfig(const Checkpoint& checkpoint, const ModelConfig& config);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_PLAN_CHECKPOINT_CHECK_H_
