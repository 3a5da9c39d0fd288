// What a model family's tokenizer looks like besides its BPE: the pre-tokenizer regex, the
// normalizer, the special tokens and which of them are bos/eos/pad, whether encoding adds bos,
// and the chat template (written for expertmesh in each family's published prompt format).
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_FAMILY_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_FAMILY_H_

#include <string>
#include <vector>

#include "model/config/model_config.h"

namespace expertmesh::make_model {

struct TokenizerFamily {
  std::string name;     // "llama3", "qwen", "deepseek-v3", "deepseek-v2", "mixtral"
  std::string pattern;  // Split regex of the pre-tokenizer
  bool nfc = false;     // Qwen2 normalizes to NFC
  // Added tokens, all special, given ids right after the BPE vocabulary in this order.
  std::vector<std::string> special_tokens;
  std::string bos_token;  // empty: the family has no bos (Qwen)
  std::string eos_token;  // what tokenizer_config calls eos (the end of an assistant turn)
  std::string pad_token;
  // generation_config eos_token_id: every token that ends generation.
  std::vector<std::string> stop_tokens;
  bool add_bos = false;  // encode() prepends bos (TemplateProcessing post-processor)
  std::string chat_template;
};

// The family whose tokenizer conventions a model of `arch` follows.
const TokenizerFamily& FamilyFor(model::Architecture arch);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_FAMILY_H_
