// Writes config.json and generation_config.json in the published Hugging Face key style
// (rope_theta / rope_scaling / torch_dtype), with every key the transformers configuration class
// of the architecture reads.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_CONFIG_WRITER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_CONFIG_WRITER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "nlohmann/json.hpp"
#include "tools/make_model/model_shape.h"

namespace expertmesh::make_model {

// The token ids config.json and generation_config.json refer to.
struct SpecialTokenIds {
  std::optional<int64_t> bos;
  int64_t eos = 0;                // the tokenizer's eos
  std::vector<int64_t> stop_ids;  // everything that ends generation
  int64_t pad = 0;
};

// Rounds a tokenizer size up to a multiple of 64, as published models pad their embeddings.
int64_t PaddedVocabSize(int64_t num_tokens);

// config.json for `arch` with dims from `shape`. `dtype` is kBF16, kF16 or kF32 (torch_dtype),
// or kF8E4M3 for a bf16 model whose linear weights are fp8 in 128 x 128 blocks (DeepSeek-V3's
// quantization_config). A non-null `quantization_config` (QuantizationConfigJson) is written as
// is, in its place before transformers_version.
nlohmann::ordered_json BuildConfigJson(model::Architecture arch, const ModelShape& shape,
                                       int64_t vocab_size, const SpecialTokenIds& ids, DType dtype,
                                       const nlohmann::ordered_json& quantization_config = nullptr);

// The quantization_config of a checkpoint in `format`, exactly as the published tools write it
// (the layouts of tests/golden/README.md, "Quantized checkpoints"):
//  - kInt4CompressedTensors: llm-compressor's W4A16, compressed-tensors `pack-quantized`
//    (symmetric int4 groups of `group_size`), targets ["Linear"], `ignore` as given;
//  - kFp8Channel: llm-compressor's FP8_DYNAMIC, `float-quantized` (per-channel e4m3 weights,
//    dynamic per-token fp8 activations declared), `ignore` as given;
//  - kInt4Gptq: AutoGPTQ's, as Qwen's GPTQ-Int4 releases (bits 4, sym, desc_act false,
//    checkpoint_format "gptq"), plus optimum's modules_in_block_to_quantize when
//    `gptq_modules` (names relative to their decoder layer) is not empty, and with
//    `gptq_lm_head` GPTQModel's `"lm_head": true` with the `dynamic` override that keeps
//    lm_head at 4 bits in the same groups (GPTQModel's own default for lm_head is 8 bits).
// (A compressed-tensors lm_head is quantized by leaving it out of `ignore`.)
// REQUIRES: one of those three formats.
nlohmann::ordered_json QuantizationConfigJson(model::LinearFormat format, int64_t group_size,
                                              const std::vector<std::string>& ignore,
                                              const std::vector<std::string>& gptq_modules,
                                              bool gptq_lm_head = false);

// generation_config.json: bos, the stop tokens as eos_token_id, pad.
nlohmann::ordered_json BuildGenerationConfigJson(const SpecialTokenIds& ids);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_CONFIG_WRITER_H_
