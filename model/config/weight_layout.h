// The tensors of a Hugging Face checkpoint for a ModelConfig: exact names and shapes, as the
// transformers modeling code (and DeepSeek's modeling_deepseek.py) defines them. Used both to
// write checkpoints (make-model) and to check loaded ones.
#ifndef EXPERTMESH_MODEL_CONFIG_WEIGHT_LAYOUT_H_
#define EXPERTMESH_MODEL_CONFIG_WEIGHT_LAYOUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "model/config/model_config.h"

namespace expertmesh::model {

struct TensorSpec {
  std::string name;            // e.g. "model.layers.3.mlp.experts.7.down_proj.weight"
  std::vector<int64_t> shape;  // PyTorch order: Linear weights are [out_features, in_features]
  // Stored in fp32 even in a bf16 checkpoint (DeepSeek-V3 e_score_correction_bias, and every
  // fp8 `*_scale_inv` tensor).
  bool float32_in_checkpoint = false;
  // With config.fp8_quantization: this weight is stored as F8_E4M3 and the next spec in the list
  // is its F32 `<name>_scale_inv`. Always false without fp8 quantization.
  bool fp8_block_quantized = false;

  int64_t NumElements() const;
};

// Every tensor of the checkpoint, in a fixed order: embeddings, then layer by layer (attention,
// norms, MLP / MoE), then the final norm and lm_head (absent when tie_word_embeddings). Layers
// beyond num_hidden_layers (DeepSeek-V3's MTP module) are not listed: transformers ignores them.
// REQUIRES: config passed Validate().
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

// The dtype a spec is stored in, for a checkpoint whose floating-point tensors use `dtype`
// (usually config.torch_dtype): F32 when float32_in_checkpoint, F8_E4M3 when
// fp8_block_quantized, `dtype` otherwise.
DType CheckpointDType(const TensorSpec& spec, DType dtype);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_CONFIG_WEIGHT_LAYOUT_H_
