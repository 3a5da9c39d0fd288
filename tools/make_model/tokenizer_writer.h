// Turns a trained BPE model and a family's conventions into the Hugging Face tokenizer files:
// tokenizer.json (the `tokenizers` serialization: Split regex + ByteLevel pre-tokenizer, BPE
// model, ByteLevel decoder, special tokens as added tokens) and tokenizer_config.json
// (bos/eos/pad, added_tokens_decoder, chat_template).
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_WRITER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_WRITER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "nlohmann/json.hpp"
#include "tools/make_model/bpe_trainer.h"
#include "tools/make_model/tokenizer_family.h"

namespace expertmesh::make_model {

struct TokenizerFiles {
  nlohmann::ordered_json tokenizer;         // tokenizer.json
  nlohmann::ordered_json tokenizer_config;  // tokenizer_config.json
  int64_t num_tokens = 0;                   // BPE vocab + special tokens
  std::optional<int64_t> bos_id;
  int64_t eos_id = 0;             // tokenizer_config's eos
  std::vector<int64_t> stop_ids;  // generation_config eos_token_id
  int64_t pad_id = 0;
};

// Special tokens get ids right after the BPE vocabulary, in family order. `model_max_length`
// goes into tokenizer_config.json (the model's max_position_embeddings).
TokenizerFiles BuildTokenizerFiles(const BpeModel& bpe, const TokenizerFamily& family,
                                   int64_t model_max_length);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_WRITER_H_
