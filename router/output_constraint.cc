#include "router/output_constraint.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "router/json_body.h"
#include "router/request_validation.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;
using Kind = OutputConstraint::Kind;

const Json* Field(const Json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// The top-level request parameter a (possibly dotted) field belongs to: errors carry it as
// "param", which OpenAI clients show.
std::string TopParam(std::string_view field) {
  return std::string(field.substr(0, field.find('.')));
}

absl::Status Invalid(std::string_view field, const std::string& message) {
  return InvalidParam(TopParam(field), message);
}

// A JSON schema given as an object (or a boolean schema), or as JSON text of one (vLLM's
// guided_json and structured_outputs.json take both).
absl::Status ReadSchema(const Json& v, const std::string& field, OutputConstraint* out) {
  out->kind = Kind::kJsonSchema;
  out->field = field;
  if (v.is_object() || v.is_boolean()) {
    out->text = v.dump(-1, ' ', false, Json::error_handler_t::replace);
    return absl::OkStatus();
  }
  if (v.is_string()) {
    // Through the body parser, so the nesting bound holds inside the string too.
    absl::StatusOr<Json> parsed = ParseJsonBody(v.get_ref<const std::string&>());
    if (!parsed.ok() || !(parsed->is_object() || parsed->is_boolean())) {
      return Invalid(field, absl::StrCat("'", field,
                                         "' must be a JSON schema (an object, or the "
                                         "JSON text of one)",
                                         parsed.ok() ? "" : ": ",
                                         parsed.ok() ? "" : parsed.status().message()));
    }
    out->text = parsed->dump(-1, ' ', false, Json::error_handler_t::replace);
    return absl::OkStatus();
  }
  return Invalid(field, absl::StrCat("'", field, "' must be a JSON schema object"));
}

absl::Status ReadText(const Json& v, const std::string& field, Kind kind, OutputConstraint* out) {
  if (!v.is_string()) return Invalid(field, absl::StrCat("'", field, "' must be a string"));
  out->kind = kind;
  out->field = field;
  out->text = v.get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadChoices(const Json& v, const std::string& field, OutputConstraint* out) {
  if (!v.is_array() || v.empty()) {
    return Invalid(field, absl::StrCat("'", field, "' must be a non-empty array of strings"));
  }
  out->kind = Kind::kChoice;
  out->field = field;
  for (const Json& c : v) {
    if (!c.is_string()) {
      return Invalid(field, absl::StrCat("'", field, "' must be a non-empty array of strings"));
    }
    out->choices.push_back(c.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ReadResponseFormat(const Json& v, std::vector<OutputConstraint>* found) {
  if (!v.is_object()) return InvalidParam("response_format", "'response_format' must be an object");
  const Json* type = Field(v, "type");
  if (type == nullptr || !type->is_string()) {
    return InvalidParam("response_format", "'response_format' needs a string 'type'");
  }
  const std::string t = type->get<std::string>();
  if (t == "text") return absl::OkStatus();
  OutputConstraint c;
  if (t == "json_object") {
    c.kind = Kind::kJsonObject;
    c.field = "response_format";
  } else if (t == "json_schema") {
    const Json* js = Field(v, "json_schema");
    if (js == nullptr || !js->is_object()) {
      return InvalidParam("response_format",
                          "response_format type 'json_schema' needs a 'json_schema' object");
    }
    // name, description and strict describe the schema to OpenAI's models; the schema alone
    // decides what is allowed here (every schema is enforced as "strict").
    const Json* schema = Field(*js, "schema");
    if (schema == nullptr) {
      return InvalidParam("response_format", "'response_format.json_schema.schema' is required");
    }
    RETURN_IF_ERROR(ReadSchema(*schema, "response_format.json_schema.schema", &c));
    c.field = "response_format";
  } else {
    return InvalidParam("response_format",
                        absl::StrCat("response_format type '", t,
                                     "' is not one of text, json_object, json_schema"));
  }
  found->push_back(std::move(c));
  return absl::OkStatus();
}

absl::Status ReadStructuredOutputs(const Json& v, std::vector<OutputConstraint>* found) {
  if (!v.is_object()) {
    return InvalidParam("structured_outputs", "'structured_outputs' must be an object");
  }
  if (Field(v, "structural_tag") != nullptr) {
    return InvalidParam("structured_outputs",
                        "structured_outputs.structural_tag is not supported; use json, regex, "
                        "choice, grammar or json_object");
  }
  if (const Json* j = Field(v, "json")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadSchema(*j, "structured_outputs.json", &c));
    found->push_back(std::move(c));
  }
  if (const Json* r = Field(v, "regex")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadText(*r, "structured_outputs.regex", Kind::kRegex, &c));
    found->push_back(std::move(c));
  }
  if (const Json* ch = Field(v, "choice")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadChoices(*ch, "structured_outputs.choice", &c));
    found->push_back(std::move(c));
  }
  if (const Json* g = Field(v, "grammar")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadText(*g, "structured_outputs.grammar", Kind::kGrammar, &c));
    found->push_back(std::move(c));
  }
  if (const Json* jo = Field(v, "json_object")) {
    if (!jo->is_boolean()) {
      return InvalidParam("structured_outputs",
                          "'structured_outputs.json_object' must be a boolean");
    }
    if (jo->get<bool>()) {
      found->push_back({.kind = Kind::kJsonObject, .field = "structured_outputs.json_object"});
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* OutputConstraintKindName(OutputConstraint::Kind kind) {
  switch (kind) {
    case Kind::kNone:
      return "none";
    case Kind::kJsonSchema:
      return "json_schema";
    case Kind::kJsonObject:
      return "json_object";
    case Kind::kRegex:
      return "regex";
    case Kind::kChoice:
      return "choice";
    case Kind::kGrammar:
      return "grammar";
  }
  return "none";
}

absl::Status ReadOutputConstraint(const Json& body, OutputConstraint* out) {
  std::vector<OutputConstraint> found;
  if (const Json* rf = Field(body, "response_format"))
    RETURN_IF_ERROR(ReadResponseFormat(*rf, &found));
  if (const Json* so = Field(body, "structured_outputs")) {
    RETURN_IF_ERROR(ReadStructuredOutputs(*so, &found));
  }
  if (const Json* j = Field(body, "guided_json")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadSchema(*j, "guided_json", &c));
    found.push_back(std::move(c));
  }
  if (const Json* r = Field(body, "guided_regex")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadText(*r, "guided_regex", Kind::kRegex, &c));
    found.push_back(std::move(c));
  }
  if (const Json* ch = Field(body, "guided_choice")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadChoices(*ch, "guided_choice", &c));
    found.push_back(std::move(c));
  }
  if (const Json* g = Field(body, "guided_grammar")) {
    OutputConstraint c;
    RETURN_IF_ERROR(ReadText(*g, "guided_grammar", Kind::kGrammar, &c));
    found.push_back(std::move(c));
  }
  if (found.size() > 1) {
    return InvalidParam(TopParam(found[1].field),
                        absl::StrCat("'", found[0].field, "' and '", found[1].field,
                                     "' cannot be combined: a request takes at most one output "
                                     "constraint"));
  }
  if (!found.empty()) *out = std::move(found.front());
  return absl::OkStatus();
}

}  // namespace expertmesh::router
