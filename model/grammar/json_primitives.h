// Grammar pieces for JSON strings under JSON-schema constraints: formats, and regex expressions
// rewritten as JSON string content (numbers are in json_number.h). Used by json_schema.cc; the
// expressions hold no rule references.
#ifndef EXPERTMESH_MODEL_GRAMMAR_JSON_PRIMITIVES_H_
#define EXPERTMESH_MODEL_GRAMMAR_JSON_PRIMITIVES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// The content (between the quotes) of a string of the JSON-schema `format`: date, time,
// date-time (RFC 3339), uuid, email, ipv4, hostname. INVALID_ARGUMENT for other formats.
absl::StatusOr<Expr> StringFormatExpr(std::string_view format);

// `text` as the characters of a JSON string: " and \ escaped, control characters as \n \t \r \b
// \f or \u00XX.
std::string EscapeJsonString(std::string_view text);

// The fewest and most characters (code points) a string of `e` has; the most is kUnbounded when
// there is no limit. REQUIRES: `e` holds no rule references.
std::pair<int64_t, int64_t> CharLengthBounds(const Expr& e);

// Rewrites an expression over decoded text (a regex) as one over JSON string content: literals
// are escaped, classes lose " \ and control characters and gain their escape sequences.
Expr JsonStringContent(const Expr& e);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_JSON_PRIMITIVES_H_
