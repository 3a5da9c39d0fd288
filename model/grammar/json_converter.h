// The JSON schema converter behind json_schema.h, split over json_schema.cc (dispatch, $ref),
// json_scalars.cc (strings, integers, numbers) and json_containers.cc (objects, arrays, the
// any-value rules). Internal.
#ifndef EXPERTMESH_MODEL_GRAMMAR_JSON_CONVERTER_H_
#define EXPERTMESH_MODEL_GRAMMAR_JSON_CONVERTER_H_

#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/grammar/ast.h"
#include "model/grammar/json_schema.h"
#include "nlohmann/json.hpp"

namespace expertmesh::grammar {

class JsonSchemaConverter {
 public:
  using Json = nlohmann::ordered_json;

  // `root` must outlive the converter.
  JsonSchemaConverter(const Json& root, const JsonGrammarOptions& options)
      : root_(root), options_(options) {}

  // The grammar of the whole schema, its start rule `root`.
  absl::StatusOr<Grammar> ConvertRoot();
  // The grammar of any JSON object.
  Grammar AnyObject();

 private:
  // Where a subschema is: its JSON pointer (for errors and $ref) and the rule name it would get.
  struct Place {
    std::string pointer;  // "" for the root, "/properties/a", ...
    std::string name;     // root, root-a, Address, ...
    Place Child(std::string_view pointer_part, std::string_view name_part) const;
  };

  absl::Status Error(const Place& at, std::string_view message) const;

  // The schema's language as an expression; objects and arrays become a rule of their own (named
  // at.name, made unique) referred to by the returned expression.
  absl::StatusOr<Expr> Value(const Json& schema, const Place& at);
  // Adds rule `name` (a name not yet used) for the schema.
  absl::Status DefineRule(const std::string& name, const Json& schema, const Place& at);
  // The schema's language as an expression, without a rule of its own.
  absl::StatusOr<Expr> Body(const Json& schema, const Place& at);
  absl::StatusOr<Expr> NestedBody(const Json& schema, const Place& at);  // Body, depth counted
  absl::StatusOr<Expr> TypedBody(std::string_view type, const Json& schema, const Place& at);
  absl::StatusOr<Expr> Ref(const Json& schema, const Place& at);
  absl::StatusOr<Expr> Alternatives(std::string_view keyword, const Json& schema, const Place& at);
  absl::StatusOr<Expr> StringBody(const Json& schema, const Place& at);
  absl::StatusOr<Expr> IntegerBody(const Json& schema, const Place& at);
  absl::StatusOr<Expr> NumberBody(const Json& schema, const Place& at);
  absl::StatusOr<Expr> ObjectBody(const Json& schema, const Place& at);
  absl::StatusOr<Expr> ArrayBody(const Json& schema, const Place& at);
  // A non-negative integer keyword (minItems, maxLength, ...), or `fallback` when absent.
  absl::StatusOr<int64_t> Count(const Json& schema, std::string_view keyword, int64_t fallback,
                                const Place& at) const;

  // Shared rules, added on first use under a name no definition has taken: "ws" (a bounded gap),
  // "char" (one character of a JSON string), "string", "number", "value", "object", "array"
  // (any JSON of that kind).
  Expr Helper(std::string_view key);
  Expr Ws();
  Expr AnyValue() { return Helper("value"); }

  static constexpr int kMaxNesting = 128;

  const Json& root_;
  const JsonGrammarOptions options_;
  int depth_ = 0;
  Grammar g_;
  std::map<std::string, std::string> ref_rules_;             // JSON pointer -> rule name
  std::map<std::string, std::string, std::less<>> helpers_;  // helper key -> rule name
};

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_JSON_CONVERTER_H_
