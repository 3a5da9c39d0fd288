#include "model/tokenizer/post_processor.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {
namespace {

using nlohmann::json;

absl::Status AppendSpecialIds(const json& special_tokens, const std::string& name,
                              std::vector<int32_t>* out) {
  if (!special_tokens.is_object() || !special_tokens.contains(name) ||
      !special_tokens[name].is_object() || !special_tokens[name].contains("ids") ||
      !special_tokens[name]["ids"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "post_processor TemplateProcessing: special token \"", name, "\" is not defined"));
  }
  for (const json& id : special_tokens[name]["ids"]) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          "post_processor TemplateProcessing: special token \"", name, "\" has a bad id"));
    }
    out->push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return absl::OkStatus();
}

absl::Status ParseTemplate(const json& spec, PostProcessor* out) {
  if (!spec.contains("single")) {
    return absl::InvalidArgumentError("post_processor TemplateProcessing: missing \"single\"");
  }
  const json& special_tokens = spec.contains("special_tokens") ? spec["special_tokens"] : json();
  bool seen_sequence = false;
  auto add_piece = [&](bool is_sequence, const std::string& name) -> absl::Status {
    if (is_sequence) {
      if (seen_sequence) {
        return absl::InvalidArgumentError(
            "post_processor TemplateProcessing: \"single\" names the sequence twice");
      }
      seen_sequence = true;
      return absl::OkStatus();
    }
    return AppendSpecialIds(special_tokens, name, seen_sequence ? &out->suffix : &out->prefix);
  };
  const json& single = spec["single"];
  if (single.is_string()) {
    // The short form: "[CLS]:0 $A:0 [SEP]:0".
    for (absl::string_view piece :
         absl::StrSplit(single.get<std::string>(), ' ', absl::SkipEmpty())) {
      const std::string name(piece.substr(0, piece.find(':')));
      RETURN_IF_ERROR(add_piece(!name.empty() && name[0] == '$', name));
    }
  } else if (single.is_array()) {
    for (const json& item : single) {
      if (item.is_object() && item.contains("Sequence")) {
        RETURN_IF_ERROR(add_piece(true, ""));
      } else if (item.is_object() && item.contains("SpecialToken") &&
                 item["SpecialToken"].is_object() && item["SpecialToken"].contains("id") &&
                 item["SpecialToken"]["id"].is_string()) {
        RETURN_IF_ERROR(add_piece(false, item["SpecialToken"]["id"].get<std::string>()));
      } else {
        return absl::InvalidArgumentError(
            "post_processor TemplateProcessing: bad item in \"single\"");
      }
    }
  } else {
    return absl::InvalidArgumentError(
        "post_processor TemplateProcessing: \"single\" must be a string or an array");
  }
  if (!seen_sequence) {
    return absl::InvalidArgumentError(
        "post_processor TemplateProcessing: \"single\" does not contain the sequence");
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> PairId(const json& spec, const char* key, std::string_view type) {
  if (!spec.contains(key) || !spec[key].is_array() || spec[key].size() != 2 ||
      !spec[key][1].is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("post_processor ", AbslView(type), ": \"", key, "\" must be [token, id]"));
  }
  return static_cast<int32_t>(spec[key][1].get<int64_t>());
}

absl::Status Parse(const json& spec, PostProcessor* out) {
  if (spec.is_null()) return absl::OkStatus();
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string()) {
    return absl::InvalidArgumentError("post_processor: expected an object with a string \"type\"");
  }
  const std::string type = spec["type"].get<std::string>();
  if (type == "ByteLevel") return absl::OkStatus();  // only trims offsets, which we do not track
  if (type == "TemplateProcessing") return ParseTemplate(spec, out);
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    ASSIGN_OR_RETURN(int32_t cls, PairId(spec, "cls", type));
    ASSIGN_OR_RETURN(int32_t sep, PairId(spec, "sep", type));
    out->prefix.push_back(cls);
    out->suffix.insert(out->suffix.begin(), sep);
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    if (!spec.contains("processors") || !spec["processors"].is_array()) {
      return absl::InvalidArgumentError("post_processor Sequence: \"processors\" must be an array");
    }
    // Each processor wraps the output of the previous one.
    for (const json& item : spec["processors"]) {
      PostProcessor inner;
      RETURN_IF_ERROR(Parse(item, &inner));
      out->prefix.insert(out->prefix.begin(), inner.prefix.begin(), inner.prefix.end());
      out->suffix.insert(out->suffix.end(), inner.suffix.begin(), inner.suffix.end());
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "post_processor type \"", type,
      "\" is not supported (TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, "
      "Sequence)"));
}

}  // namespace

absl::StatusOr<PostProcessor> PostProcessorFromJson(const json& spec) {
  PostProcessor out;
  RETURN_IF_ERROR(Parse(spec, &out));
  return out;
}

}  // namespace expertmesh::tokenizer
