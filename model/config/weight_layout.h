// The tensors of a Hugging Face checkpoint for a ModelConfig: exact names and shapes, as the
// transformers modeling code (and DeepSeek's modeling_deepseek.py) defines them. Used both to
// write checkpoints (make-model) and to check loaded ones.
#ifndef EXPERTMESH_MODEL_CONFIG_WEIGHT_LAYOUT_H_
#define EXPERTMESH_MODEL_CONFIG_WEIGHT_LAYOUT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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
  // is its scale (`<name>_scale_inv` F32 for blocks, `<name>_scale` [out, 1] per channel).
  // Always false without fp8 quantization.
  bool fp8_block_quantized = false;
  // Packed int4 and its metadata: the dtype the checkpoint stores whatever the model dtype
  // (I32 weight_packed / qweight / qzeros / g_idx, I64 weight_shape).
  std::optional<DType> fixed_dtype;
  // A quantization scale (or GPTQ's bias): quantizers store these in the model dtype, GPTQ in
  // F16, some in F32, so any of F32, BF16 and F16 is accepted; CheckpointDType gives the usual
  // one (`preferred_dtype`, else the model dtype).
  bool any_float_dtype = false;
  std::optional<DType> preferred_dtype;
  // May be absent: GPTQ's g_idx without act-order, and the bias AutoGPTQ writes for every
  // Linear (zeros where the architecture has none).
  bool optional = false;
  // Weight parameters this tensor stores (-1: NumElements()): out x in for a packed int4 weight,
  // 0 for scales, zero points and other quantization metadata.
  int64_t parameters = -1;
  // Bytes the weight loader keeps of this tensor when they differ from its checkpoint bytes:
  // scale grids become f32, GPTQ zero points of a symmetric checkpoint and weight_shape are
  // dropped, g_idx becomes the column order of act-order weights.
  std::optional<uint64_t> loaded_bytes;

  int64_t NumElements() const;
  int64_t Parameters() const { return parameters >= 0 ? parameters : NumElements(); }
};

// How the checkpoint stores a Linear layer's weight.
enum class LinearFormat {
  kPlain,                  // <m>.weight in the model dtype
  kFp8Block,               // <m>.weight F8_E4M3 + <m>.weight_scale_inv blocks
  kFp8Channel,             // <m>.weight F8_E4M3 + <m>.weight_scale [out, 1]
  kInt4CompressedTensors,  // <m>.weight_packed + weight_scale + weight_shape
  kInt4Gptq,               // <m>.qweight + qzeros + scales (+ g_idx)
};

// A torch.nn.Linear of the model (routers and lm_head included; DeepSeek's MoEGate is not one).
struct LinearSpec {
  std::string module;  // "model.layers.3.mlp.experts.7.down_proj"
  int64_t out = 0, in = 0;
  bool bias = false;  // the architecture has a bias here
  LinearFormat format = LinearFormat::kPlain;
  // Stored plain whatever the quantization config's patterns say: a router, or lm_head unless
  // an int4 config quantizes it (GPTQ `lm_head: true`; compressed-tensors targets selecting it).
  bool always_plain = false;
};

// Every tensor of the checkpoint, in a fixed order: embeddings, then layer by layer (attention,
// norms, MLP / MoE), then the final norm and lm_head (absent when tie_word_embeddings; packed
// like the layers when an int4 config quantizes it). Layers
// beyond num_hidden_layers (DeepSeek-V3's MTP module) are not listed: transformers ignores them.
// REQUIRES: config passed Validate().
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

// The Linear layers of ExpectedTensors (same order) with the format each is stored in.
// REQUIRES: config passed Validate(), or at least its quantization patterns compile.
std::vector<LinearSpec> LinearLayers(const ModelConfig& config);

// Whether a compressed-tensors quantization_config (int4 or per-channel fp8) selects the Linear
// `module`: some target matches and no ignore entry does. False when the patterns do not
// compile or the config has no compressed-tensors quantization.
bool CompressedTensorsQuantizes(const ModelConfig& config, std::string_view module);

// The dtype a spec is stored in, for a checkpoint whose floating-point tensors use `dtype`
// (usually config.torch_dtype): fixed_dtype when set, F32 when float32_in_checkpoint, F8_E4M3
// when fp8_block_quantized, preferred_dtype when set, `dtype` otherwise.
DType CheckpointDType(const TensorSpec& spec, DType dtype);

// Whether a checkpoint tensor of `stored` dtype fits `spec` (CheckpointDType, or any float
// dtype for any_float_dtype specs).
bool CheckpointDTypeMatches(const TensorSpec& spec, DType dtype, DType stored);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_CONFIG_WEIGHT_LAYOUT_H_
