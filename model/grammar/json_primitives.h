// Grammar pieces for JSON scalars under JSON-schema constraints: integer and number ranges as
// digit grammars, string formats, and regex expressions rewritten as JSON string content. Used
// by json_schema.cc; the expressions hold no rule references.
#ifndef EXPERTMESH_MODEL_GRAMMAR_JSON_PRIMITIVES_H_
#define EXPERTMESH_MODEL_GRAMMAR_JSON_PRIMITIVES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// JSON integers (no leading zeros, no "-0") in [lo, hi]; an absent bound is unbounded.
// REQUIRES: lo <= hi when both are given.
Expr IntegerRangeExpr(std::optional<int64_t> lo, std::optional<int64_t> hi);

// One end of a number interval.
struct NumberBound {
  int64_t value = 0;
  bool exclusive = false;
};

// JSON numbers written without an exponent (a bounded number is always written in plain decimal
// form) whose value lies in the interval; nullopt when the interval is empty.
std::optional<Expr> NumberRangeExpr(std::optional<NumberBound> lo, std::optional<NumberBound> hi);

// The content (between the quotes) of a string of the JSON-schema `format`: date, time,
// date-time (RFC 3339), uuid, email, ipv4, hostname. INVALID_ARGUMENT for other formats.
absl::StatusOr<Expr> StringFormatExpr(std::string_view format);

// `text` as the characters of a JSON string: " and \ escaped, control characters as \n \t \r \b
// \f or \u00XX.
std::string EscapeJsonString(std::string_view text);

// Rewrites an expression over decoded text (a regex) as one over JSON string content: literals
// are escaped, classes lose " \ and control characters and gain their escape sequences.
Expr JsonStringContent(const Expr& e);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_JSON_PRIMITIVES_H_
