// JSON schema -> grammar: dispatch on keywords, and $ref. The scalar types are in json_scalars.cc;
// objects, arrays and the shared any-value rules in json_containers.cc.
#include "model/grammar/json_schema.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "model/grammar/expr_util.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_converter.h"

namespace expertmesh::grammar {
namespace {

using Json = JsonSchemaConverter::Json;

// Keywords that change the language and are not supported: refusing beats ignoring them, which
// would let the model produce output the client's validator rejects.
const std::set<std::string, std::less<>> kUnsupportedKeywords = {"not",
                                                                 "if",
                                                                 "then",
                                                                 "else",
                                                                 "patternProperties",
                                                                 "dependentRequired",
                                                                 "dependentSchemas",
                                                                 "dependencies",
                                                                 "multipleOf",
                                                                 "contains",
                                                                 "minContains",
                                                                 "maxContains",
                                                                 "propertyNames",
                                                                 "minProperties",
                                                                 "maxProperties",
                                                                 "unevaluatedProperties",
                                                                 "unevaluatedItems",
                                                                 "$dynamicRef",
                                                                 "$recursiveRef"};

// The keywords this converter interprets. Next to $ref, anyOf, oneOf or allOf one of these
// would have to be intersected with the alternatives, which is not supported; anything else there
// (annotations, definitions, vendor extensions) is ignored as it is everywhere else.
const std::set<std::string, std::less<>> kLanguageKeywords = {"type",
                                                              "properties",
                                                              "required",
                                                              "additionalProperties",
                                                              "items",
                                                              "prefixItems",
                                                              "additionalItems",
                                                              "minItems",
                                                              "maxItems",
                                                              "minLength",
                                                              "maxLength",
                                                              "pattern",
                                                              "format",
                                                              "minimum",
                                                              "maximum",
                                                              "exclusiveMinimum",
                                                              "exclusiveMaximum",
                                                              "enum",
                                                              "const",
                                                              "anyOf",
                                                              "oneOf",
                                                              "allOf",
                                                              "$ref"};

std::string CanonicalJson(const Json& value) { return value.dump(); }

// Whether `value` is an instance of `type` (a type name or a list of them).
bool HasType(const Json& type, const Json& value) {
  if (type.is_array()) {
    return std::any_of(type.begin(), type.end(), [&](const Json& t) { return HasType(t, value); });
  }
  if (!type.is_string()) return true;  // malformed: the type check reports it
  const std::string t = type.get<std::string>();
  if (t == "string") return value.is_string();
  if (t == "boolean") return value.is_boolean();
  if (t == "null") return value.is_null();
  if (t == "object") return value.is_object();
  if (t == "array") return value.is_array();
  if (t == "number") return value.is_number();
  if (t == "integer") {
    return value.is_number_integer() ||
           (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>());
  }
  return false;
}

bool IsWholeNumber(const Json& value) {
  if (value.is_number_integer()) return true;
  if (!value.is_number_float()) return false;
  const double v = value.get<double>();
  return std::floor(v) == v && v >= -9.2e18 && v <= 9.2e18;
}

}  // namespace

JsonSchemaConverter::Place JsonSchemaConverter::Place::Child(std::string_view pointer_part,
                                                             std::string_view name_part) const {
  return Place{absl::StrCat(pointer, "/", std::string(pointer_part)),
               absl::StrCat(name, "-", SanitizeRuleName(name_part))};
}

absl::Status JsonSchemaConverter::Error(const Place& at, std::string_view message) const {
  return absl::InvalidArgumentError(
      absl::StrCat("JSON schema at #", at.pointer, ": ", std::string(message)));
}

absl::StatusOr<Grammar> JsonSchemaConverter::ConvertRoot() {
  ref_rules_[""] = "root";
  absl::Status status = DefineRule("root", root_, Place{"", "root"});
  if (!status.ok()) return status;
  return std::move(g_);
}

absl::Status JsonSchemaConverter::DefineRule(const std::string& name, const Json& schema,
                                             const Place& at) {
  const size_t index = g_.rules.size();
  g_.rules.push_back(Rule{name, Expr::Empty()});  // reserves the name; recursion refers to it
  absl::StatusOr<Expr> body = Body(schema, Place{at.pointer, name});
  if (!body.ok()) return body.status();
  g_.rules[index].body = *std::move(body);
  return absl::OkStatus();
}

absl::StatusOr<Expr> JsonSchemaConverter::Value(const Json& schema, const Place& at) {
  bool composite = false;
  if (schema.is_object() && !schema.contains("$ref") && !schema.contains("enum") &&
      !schema.contains("const")) {
    const Json type = schema.value("type", Json());
    const auto has_type = [&](std::string_view t) {
      if (type.is_string()) return type.get<std::string>() == t;
      if (type.is_array()) {
        for (const Json& item : type) {
          if (item.is_string() && item.get<std::string>() == t) return true;
        }
      }
      return false;
    };
    composite = has_type("object") || has_type("array") || schema.contains("properties") ||
                schema.contains("items") || schema.contains("anyOf") || schema.contains("oneOf");
  }
  if (!composite) return Body(schema, at);
  const std::string name = UniqueRuleName(g_, at.name);
  absl::Status status = DefineRule(name, schema, at);
  if (!status.ok()) return status;
  return Expr::Ref(name);
}

absl::StatusOr<Expr> JsonSchemaConverter::Body(const Json& schema, const Place& at) {
  if (schema.is_boolean()) {
    if (schema.get<bool>()) return AnyValue();
    return Error(at, "schema false matches nothing");
  }
  if (!schema.is_object()) return Error(at, "a schema must be an object or a boolean");
  // Schemas come from clients: bounded nesting keeps the recursion off the stack's end.
  if (depth_ >= kMaxNesting) return Error(at, "schemas nested too deeply");
  ++depth_;
  absl::StatusOr<Expr> body = NestedBody(schema, at);
  --depth_;
  return body;
}

absl::StatusOr<Expr> JsonSchemaConverter::NestedBody(const Json& schema, const Place& at) {
  for (const auto& [key, value] : schema.items()) {
    if (kUnsupportedKeywords.contains(key)) {
      return Error(at, absl::StrCat("keyword '", key, "' is not supported"));
    }
    if (key == "uniqueItems" && value != Json(false)) {
      return Error(at, "keyword 'uniqueItems' is not supported");
    }
  }
  absl::StatusOr<Expr> body = [&]() -> absl::StatusOr<Expr> {
    if (schema.contains("$ref")) return Ref(schema, at);
    // enum / const values are written as given, but only those of the schema's `type` (when it
    // has one): a client's validator checks both keywords.
    const auto typed = [&](const Json& v) {
      return !schema.contains("type") || HasType(schema["type"], v);
    };
    if (schema.contains("const")) {
      if (!typed(schema["const"])) {
        return Error(at, "keyword 'const' holds a value of another type than 'type'");
      }
      return Lit(CanonicalJson(schema["const"]));
    }
    if (schema.contains("enum")) {
      const Json& values = schema["enum"];
      if (!values.is_array() || values.empty()) {
        return Error(at, "keyword 'enum' needs a non-empty array of values");
      }
      std::vector<Expr> alternatives;
      for (const Json& v : values) {
        if (typed(v)) alternatives.push_back(Lit(CanonicalJson(v)));
      }
      if (alternatives.empty()) {
        return Error(at, "keyword 'enum' holds no value of the type 'type' names");
      }
      return Alt(std::move(alternatives));
    }
    for (std::string_view keyword : {"anyOf", "oneOf", "allOf"}) {
      if (schema.contains(keyword)) return Alternatives(keyword, schema, at);
    }
    std::vector<std::string> types;
    if (schema.contains("type")) {
      const Json& type = schema["type"];
      if (type.is_string()) {
        types.push_back(type.get<std::string>());
      } else if (type.is_array() && !type.empty()) {
        for (const Json& t : type) {
          if (!t.is_string()) return Error(at, "keyword 'type' must hold strings");
          types.push_back(t.get<std::string>());
        }
      } else {
        return Error(at, "keyword 'type' must be a string or a non-empty array");
      }
    } else {
      // No type: the type the keywords present constrain (as XGrammar infers it).
      const auto any_of = [&](std::initializer_list<const char*> keys) {
        for (const char* k : keys) {
          if (schema.contains(k)) return true;
        }
        return false;
      };
      if (any_of({"properties", "additionalProperties", "required"})) types.push_back("object");
      if (any_of({"items", "prefixItems", "minItems", "maxItems"})) types.push_back("array");
      if (any_of({"minLength", "maxLength", "pattern", "format"})) types.push_back("string");
      if (any_of({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) {
        types.push_back("number");
      }
      if (types.empty()) return AnyValue();
    }
    std::vector<Expr> alternatives;
    for (const std::string& type : types) {
      absl::StatusOr<Expr> typed = TypedBody(type, schema, at);
      if (!typed.ok()) return typed.status();
      alternatives.push_back(*std::move(typed));
    }
    return Alt(std::move(alternatives));
  }();
  if (!body.ok()) return body.status();
  if (schema.contains("nullable") && schema["nullable"] == Json(true)) {
    return Alt({*std::move(body), Lit("null")});
  }
  return body;
}

absl::StatusOr<Expr> JsonSchemaConverter::TypedBody(std::string_view type, const Json& schema,
                                                    const Place& at) {
  if (type == "string") return StringBody(schema, at);
  if (type == "integer") return IntegerBody(schema, at);
  if (type == "number") return NumberBody(schema, at);
  if (type == "boolean") return Alt({Lit("true"), Lit("false")});
  if (type == "null") return Lit("null");
  if (type == "object") return ObjectBody(schema, at);
  if (type == "array") return ArrayBody(schema, at);
  return Error(at, absl::StrCat("unknown type '", std::string(type), "'"));
}

absl::StatusOr<Expr> JsonSchemaConverter::Alternatives(std::string_view keyword, const Json& schema,
                                                       const Place& at) {
  for (const auto& [key, value] : schema.items()) {
    if (key != keyword && kLanguageKeywords.contains(key)) {
      return Error(at, absl::StrCat("keyword '", key, "' next to '", std::string(keyword),
                                    "' is not supported (move it into each alternative)"));
    }
  }
  const Json& items = schema[std::string(keyword)];
  if (!items.is_array() || items.empty()) {
    return Error(at, absl::StrCat("keyword '", std::string(keyword), "' needs a non-empty array"));
  }
  if (keyword == "allOf") {
    if (items.size() != 1) {
      return Error(at, "keyword 'allOf' with more than one schema is not supported");
    }
    // The one schema is this schema: its body, under this schema's rule name.
    return Body(items[0], Place{absl::StrCat(at.pointer, "/allOf/0"), at.name});
  }
  std::vector<Expr> alternatives;
  for (size_t i = 0; i < items.size(); ++i) {
    absl::StatusOr<Expr> alternative =
        Value(items[i], at.Child(absl::StrCat(std::string(keyword), "/", i), std::to_string(i)));
    if (!alternative.ok()) return alternative.status();
    alternatives.push_back(*std::move(alternative));
  }
  return Alt(std::move(alternatives));
}

absl::StatusOr<Expr> JsonSchemaConverter::Ref(const Json& schema, const Place& at) {
  for (const auto& [key, value] : schema.items()) {
    if (key != "$ref" && kLanguageKeywords.contains(key)) {
      return Error(at, absl::StrCat("keyword '", key, "' next to '$ref' is not supported"));
    }
  }
  if (!schema["$ref"].is_string()) return Error(at, "'$ref' must be a string");
  const std::string ref = schema["$ref"].get<std::string>();
  if (!ref.starts_with("#")) {
    return Error(at, absl::StrCat("$ref '", ref, "' is not local (only '#...' is supported)"));
  }
  // The fragment is URI-encoded: "#/$defs/My%20Model" names the definition "My Model".
  std::string pointer;
  for (size_t i = 1; i < ref.size(); ++i) {
    const auto hex = [&](size_t j) {
      const char c = j < ref.size() ? ref[j] : 'x';
      return c >= '0' && c <= '9'   ? c - '0'
             : c >= 'a' && c <= 'f' ? c - 'a' + 10
             : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                    : -1;
    };
    if (ref[i] == '%' && hex(i + 1) >= 0 && hex(i + 2) >= 0) {
      pointer.push_back(static_cast<char>(hex(i + 1) * 16 + hex(i + 2)));
      i += 2;
    } else {
      pointer.push_back(ref[i]);
    }
  }
  if (auto it = ref_rules_.find(pointer); it != ref_rules_.end()) return Expr::Ref(it->second);
  if (!pointer.empty() && pointer[0] != '/') {
    return Error(at, absl::StrCat("$ref '", ref, "' is not a JSON pointer"));
  }
  const Json* target = &root_;
  std::string last = "ref";
  for (absl::string_view raw : absl::StrSplit(pointer.substr(1), '/')) {
    const std::string part = absl::StrReplaceAll(raw, {{"~1", "/"}, {"~0", "~"}});
    if (target->is_object() && target->contains(part)) {
      target = &(*target)[part];
    } else if (target->is_array() && !part.empty() && part.size() <= 9 &&
               part.find_first_not_of("0123456789") == std::string::npos &&
               std::stoul(part) < target->size()) {
      target = &(*target)[std::stoul(part)];
    } else {
      return Error(at, absl::StrCat("$ref '", ref, "' points at nothing"));
    }
    last = part;
  }
  const std::string name = UniqueRuleName(g_, SanitizeRuleName(last));
  ref_rules_[pointer] = name;
  absl::Status status = DefineRule(name, *target, Place{pointer, name});
  if (!status.ok()) return status;
  return Expr::Ref(name);
}

absl::StatusOr<int64_t> JsonSchemaConverter::Count(const Json& schema, std::string_view keyword,
                                                   int64_t fallback, const Place& at) const {
  const auto it = schema.find(std::string(keyword));
  if (it == schema.end()) return fallback;
  if (!it->is_number_unsigned() &&
      !(it->is_number_float() && IsWholeNumber(*it) && it->get<double>() >= 0)) {
    return Error(
        at, absl::StrCat("keyword '", std::string(keyword), "' must be a non-negative integer"));
  }
  const double v =
      it->is_number_unsigned() ? static_cast<double>(it->get<uint64_t>()) : it->get<double>();
  if (v > kMaxGbnfRepeatCount) {
    return Error(at, absl::StrCat("keyword '", std::string(keyword), "' ", it->dump(),
                                  " is above the supported ", kMaxGbnfRepeatCount));
  }
  return static_cast<int64_t>(v);
}

absl::StatusOr<Grammar> JsonSchemaToGrammar(std::string_view schema_json,
                                            const JsonGrammarOptions& options) {
  Json schema;
  try {
    schema = Json::parse(schema_json);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("JSON schema is not valid JSON: ", e.what()));
  }
  if (!schema.is_object() && !schema.is_boolean()) {
    return absl::InvalidArgumentError("JSON schema must be an object or a boolean");
  }
  return JsonSchemaConverter(schema, options).ConvertRoot();
}

Grammar JsonObjectGrammar(const JsonGrammarOptions& options) {
  const JsonSchemaConverter::Json schema = JsonSchemaConverter::Json::object();
  return JsonSchemaConverter(schema, options).AnyObject();
}

}  // namespace expertmesh::grammar
