// JSON schema -> grammar (response_format json_schema, guided_json, tool parameters) and the
// grammar of any JSON object (response_format json_object).
//
// Supported: type (one or a list), object (properties in declared order, required, optional
// properties that may be skipped, additionalProperties false / true / a schema), array (items,
// prefixItems, minItems, maxItems), string (minLength, maxLength in characters, pattern, format
// date / time / date-time / uuid / email / ipv4 / hostname), integer and number bounds (minimum,
// maximum, exclusiveMinimum, exclusiveMaximum; exact, decimal bounds included), boolean, null,
// enum and const of any JSON value (only the values of the schema's `type`, when it has one),
// anyOf / oneOf (as alternatives: oneOf's exclusivity is not enforced), allOf with one schema,
// $ref to any local JSON pointer ("#", "#/$defs/X", "#/definitions/X"; recursion allowed, one
// rule per referenced schema), `{}` / true for any value, OpenAPI's nullable. Annotations (title,
// description, default, examples, $schema, $id, $comment, deprecated, readOnly, writeOnly, ...)
// and unknown keywords are ignored.
//
// Refused with INVALID_ARGUMENT naming the keyword and the JSON pointer where it is: keywords
// that change the language and are not supported (not, if/then/else, patternProperties,
// dependentRequired, dependentSchemas, uniqueItems: true, multipleOf, contains, propertyNames,
// minProperties, maxProperties, unevaluated*), unsupported formats, integer bounds beyond 64
// bits, contradictory bounds (minItems > maxItems, minLength > maxLength, minimum > maximum, an
// interval with no value), an enum with no value (of the schema's type), a $ref that is remote
// or points at nothing, minLength / maxLength beside a pattern or format that does not already
// imply them, pattern beside format, a keyword the converter interprets beside $ref / anyOf /
// oneOf / allOf, counts above kMaxGbnfRepeatCount, schemas nested deeper than 128 levels, and
// schema text that is not JSON.
//
// Choices where the schema leaves freedom, so that a constrained model cannot run away:
// - Whitespace is bounded: after `{` `[` `,` `:` and before `}` `]` a gap is empty, one space,
//   or a newline followed by at most options.max_indent spaces or tabs (compact JSON, json.dumps
//   with its default separators, and pretty-printed JSON up to that indentation all fit).
// - Object members come in the schema's declared order; extra members (additionalProperties)
//   only after the declared ones (their names are not checked against the declared ones).
// - A number with a bound is written without an exponent; integers never as 1.0 or 1e3; an
//   exponent has at most two digits (e999 is JSON but overflows a double, and parsers refuse it).
// - \uXXXX escapes never name a lone surrogate (parsers refuse one); a pair is one character.
// - A string is generated in one spelling: enum / const values and pattern literals use the
//   shortest JSON escapes (\" \\ \n ..., \u00XX for other control characters).
// - format date knows each month's length and leap years; time never writes second 60 (valid
//   only at a real leap second, which validators check against the date); email is RFC 5321's
//   dot-atom form (no quoted local parts, no IP-literal domains).
// - `pattern` is unanchored as JSON schema specifies: a side without ^ / $ may have any
//   characters before / after the match.
//
// Rule names come from definition names and property paths (root, Address, root-items,
// Address-street, ...), so identical schemas give identical GBNF text.
#ifndef EXPERTMESH_MODEL_GRAMMAR_JSON_SCHEMA_H_
#define EXPERTMESH_MODEL_GRAMMAR_JSON_SCHEMA_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"

namespace expertmesh::grammar {

struct JsonGrammarOptions {
  // false: compact JSON only (no whitespace between tokens).
  bool allow_whitespace = true;
  // The most spaces or tabs after a newline in one gap (so a gap holds at most max_indent + 1
  // characters); below 0 counts as 0.
  int32_t max_indent = 20;
  // additionalProperties absent means false (XGrammar's and OpenAI's strict mode) rather than
  // the JSON Schema default of true.
  bool strict_additional_properties = true;
};

absl::StatusOr<Grammar> JsonSchemaToGrammar(std::string_view schema_json,
                                            const JsonGrammarOptions& options = {});

// Any JSON object (values of any JSON type, nested to any depth).
Grammar JsonObjectGrammar(const JsonGrammarOptions& options = {});

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_JSON_SCHEMA_H_
