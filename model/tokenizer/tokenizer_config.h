// tokenizer_config.json and generation_config.json: the special-token strings, flags and chat
// templates that transformers keeps beside tokenizer.json. The chat-template renderer
// (model/chat/) takes the template strings from here.
#ifndef EXPERTMESH_MODEL_TOKENIZER_TOKENIZER_CONFIG_H_
#define EXPERTMESH_MODEL_TOKENIZER_TOKENIZER_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::tokenizer {

struct TokenizerConfig {
  // Token strings; a config may give each as a string or an AddedToken object.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> pad_token;
  std::optional<std::string> unk_token;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  // Chat templates by name; a config with one template string stores it as "default".
  std::map<std::string, std::string> chat_templates;
  // Absent when the config gives none or a "no limit" sentinel (transformers writes 1e30).
  std::optional<int64_t> model_max_length;
  // generation_config.json eos_token_id (an int or a list), in file order.
  std::vector<int32_t> generation_eos_token_ids;
  std::optional<int32_t> generation_bos_token_id;

  // The template called `name`, or nullptr.
  const std::string* ChatTemplate(std::string_view name = "default") const;
};

// Parses the texts of tokenizer_config.json and generation_config.json; an empty text means the
// file is absent. INVALID_ARGUMENT naming `source` (the file) and the field for malformed input.
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view tokenizer_config_json,
                                                     std::string_view config_source,
                                                     std::string_view generation_config_json,
                                                     std::string_view generation_source);

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_TOKENIZER_CONFIG_H_
