// Writes config.json and generation_config.json in the published Hugging Face key style
// (rope_theta / rope_scaling / torch_dtype), with every key the transformers configuration class
// of the architecture reads.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_CONFIG_WRITER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_CONFIG_WRITER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "common/dtype.h"
#include "model/config/model_config.h"
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

// config.json for `arch` with dims from `shape`. `dtype` is kBF16 or kF32.
nlohmann::ordered_json BuildConfigJson(model::Architecture arch, const ModelShape& shape,
                                       int64_t vocab_size, const SpecialTokenIds& ids, DType dtype);

// generation_config.json: bos, the stop tokens as eos_token_id, pad.
nlohmann::ordered_json BuildGenerationConfigJson(const SpecialTokenIds& ids);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_MODEL_CONFIG_WRITER_H_
