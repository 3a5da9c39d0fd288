#include "model/tokenizer/tokenizer_config.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer {
namespace {

using nlohmann::json;

absl::StatusOr<json> ParseJsonText(std::string_view text, std::string_view source) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(source), ": not valid JSON"));
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(source), ": top level must be an object"));
  }
  return parsed;
}

absl::Status ReadToken(const json& config, const char* key, std::string_view source,
                       std::optional<std::string>* out) {
  if (!config.contains(key) || config[key].is_null()) return absl::OkStatus();
  const json& value = config[key];
  if (value.is_string()) {
    *out = value.get<std::string>();
  } else if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    *out = value["content"].get<std::string>();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(source), ": \"", key,
                     "\" must be a string or an object with a string \"content\""));
  }
  return absl::OkStatus();
}

absl::Status ReadBool(const json& config, const char* key, std::string_view source,
                      std::optional<bool>* out) {
  if (!config.contains(key) || config[key].is_null()) return absl::OkStatus();
  if (!config[key].is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(source), ": \"", key, "\" must be a boolean"));
  }
  *out = config[key].get<bool>();
  return absl::OkStatus();
}

absl::Status ReadChatTemplates(const json& config, std::string_view source,
                               std::map<std::string, std::string>* out) {
  if (!config.contains("chat_template") || config["chat_template"].is_null()) {
    return absl::OkStatus();
  }
  const json& value = config["chat_template"];
  if (value.is_string()) {
    (*out)["default"] = value.get<std::string>();
    return absl::OkStatus();
  }
  if (value.is_array()) {
    for (const json& item : value) {
      if (!item.is_object() || !item.contains("name") || !item["name"].is_string() ||
          !item.contains("template") || !item["template"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(AbslView(source),
                         ": each chat_template entry must be {\"name\": str, \"template\": str}"));
      }
      (*out)[item["name"].get<std::string>()] = item["template"].get<std::string>();
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      AbslView(source), ": \"chat_template\" must be a string or a list of templates"));
}

absl::StatusOr<int32_t> TokenId(const json& value, std::string_view source, const char* key) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() >= INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(source), ": \"", key, "\" must be a non-negative token id or a list of them"));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

}  // namespace

const std::string* TokenizerConfig::ChatTemplate(std::string_view name) const {
  auto it = chat_templates.find(std::string(name));
  return it == chat_templates.end() ? nullptr : &it->second;
}

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view tokenizer_config_json,
                                                     std::string_view config_source,
                                                     std::string_view generation_config_json,
                                                     std::string_view generation_source) {
  TokenizerConfig out;
  if (!tokenizer_config_json.empty()) {
    ASSIGN_OR_RETURN(json config, ParseJsonText(tokenizer_config_json, config_source));
    RETURN_IF_ERROR(ReadToken(config, "bos_token", config_source, &out.bos_token));
    RETURN_IF_ERROR(ReadToken(config, "eos_token", config_source, &out.eos_token));
    RETURN_IF_ERROR(ReadToken(config, "pad_token", config_source, &out.pad_token));
    RETURN_IF_ERROR(ReadToken(config, "unk_token", config_source, &out.unk_token));
    RETURN_IF_ERROR(ReadBool(config, "add_bos_token", config_source, &out.add_bos_token));
    RETURN_IF_ERROR(ReadBool(config, "add_eos_token", config_source, &out.add_eos_token));
    RETURN_IF_ERROR(ReadChatTemplates(config, config_source, &out.chat_templates));
    if (config.contains("model_max_length") && !config["model_max_length"].is_null()) {
      const json& value = config["model_max_length"];
      if (!value.is_number() || value.get<double>() < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            AbslView(config_source), ": \"model_max_length\" must be a positive number"));
      }
      // transformers writes int(1e30) when a model sets no limit.
      if (value.get<double>() < 1e15) out.model_max_length = value.get<int64_t>();
    }
  }
  if (!generation_config_json.empty()) {
    ASSIGN_OR_RETURN(json generation, ParseJsonText(generation_config_json, generation_source));
    if (generation.contains("eos_token_id") && !generation["eos_token_id"].is_null()) {
      const json& value = generation["eos_token_id"];
      if (value.is_array()) {
        for (const json& id : value) {
          ASSIGN_OR_RETURN(int32_t eos, TokenId(id, generation_source, "eos_token_id"));
          out.generation_eos_token_ids.push_back(eos);
        }
      } else {
        ASSIGN_OR_RETURN(int32_t eos, TokenId(value, generation_source, "eos_token_id"));
        out.generation_eos_token_ids.push_back(eos);
      }
    }
    if (generation.contains("bos_token_id") && !generation["bos_token_id"].is_null()) {
      ASSIGN_OR_RETURN(out.generation_bos_token_id,
                       TokenId(generation["bos_token_id"], generation_source, "bos_token_id"));
    }
  }
  return out;
}

}  // namespace expertmesh::tokenizer
