// JSON schema -> grammar: the scalar types (strings with lengths, patterns and formats; integers
// and numbers with bounds). Dispatch and $ref are in json_schema.cc.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/grammar/expr_util.h"
#include "model/grammar/json_converter.h"
#include "model/grammar/json_number.h"
#include "model/grammar/json_primitives.h"
#include "model/grammar/regex_grammar.h"

namespace expertmesh::grammar {
namespace {

using Json = JsonSchemaConverter::Json;

// A bound keyword's value rounded to an integer (up or down), exactly for JSON integers; the
// error text completes "keyword 'minimum' ...".
std::optional<int64_t> IntegerBound(const Json& value, bool round_up, std::string* error) {
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) {
      return static_cast<int64_t>(value.get<uint64_t>());
    }
  } else if (value.is_number_integer()) {
    return value.get<int64_t>();
  } else if (!value.is_number_float()) {
    *error = "must be a number";
    return std::nullopt;
  } else {
    const double v = round_up ? std::ceil(value.get<double>()) : std::floor(value.get<double>());
    if (v >= -9.2e18 && v <= 9.2e18) return static_cast<int64_t>(v);
  }
  *error = "is outside the 64-bit range";
  return std::nullopt;
}

}  // namespace

absl::StatusOr<Expr> JsonSchemaConverter::StringBody(const Json& schema, const Place& at) {
  absl::StatusOr<int64_t> min_length = Count(schema, "minLength", 0, at);
  if (!min_length.ok()) return min_length.status();
  absl::StatusOr<int64_t> max_length = Count(schema, "maxLength", kUnbounded, at);
  if (!max_length.ok()) return max_length.status();
  const bool has_length = schema.contains("minLength") || schema.contains("maxLength");
  if (*max_length != kUnbounded && *min_length > *max_length) {
    return Error(
        at, absl::StrCat("minLength ", *min_length, " is greater than maxLength ", *max_length));
  }
  const Expr quote = Lit("\"");
  std::string format;
  if (schema.contains("format")) {
    if (!schema["format"].is_string()) return Error(at, "keyword 'format' must be a string");
    format = schema["format"].get<std::string>();
    if (format == "password") format.clear();  // OpenAPI's UI hint: any string
  }
  // A pattern or format with minLength / maxLength: the intersection of the two languages has no
  // grammar here, so it is accepted only where the pattern or format already implies the limits
  // (e.g. ^[A-Z]{3}-\d{4}$ with maxLength 8, or format uuid with minLength 36).
  const auto check_implied = [&](std::string_view what, const Expr& content) -> absl::Status {
    if (!has_length) return absl::OkStatus();
    const auto [lo, hi] = CharLengthBounds(content);
    const bool within =
        lo >= *min_length && (*max_length == kUnbounded || (hi != kUnbounded && hi <= *max_length));
    if (within) return absl::OkStatus();
    return Error(at, absl::StrCat("keyword '", std::string(what),
                                  "' together with minLength / maxLength is only supported where "
                                  "it implies them (it admits ",
                                  lo, " to ", hi == kUnbounded ? "any" : std::to_string(hi),
                                  " characters)"));
  };
  if (schema.contains("pattern")) {
    if (!format.empty()) {
      return Error(at, "keyword 'pattern' together with 'format' is not supported");
    }
    if (!schema["pattern"].is_string()) return Error(at, "keyword 'pattern' must be a string");
    absl::StatusOr<std::vector<RegexBranch>> branches =
        ParseRegex(schema["pattern"].get<std::string>());
    if (!branches.ok()) return Error(at, absl::StrCat("pattern: ", branches.status().message()));
    // JSON schema patterns are unanchored: an open side may hold any characters.
    std::vector<Expr> decoded;  // the branches over decoded text, for the length check
    std::vector<Expr> alternatives;
    const Expr any = Rep(Helper("char"), 0, kUnbounded);
    const Expr any_decoded = Rep(Expr::CharClass({}, /*negated=*/true), 0, kUnbounded);
    for (const RegexBranch& branch : *branches) {
      decoded.push_back(Seq({branch.anchored_start ? Expr::Empty() : any_decoded, branch.expr,
                             branch.anchored_end ? Expr::Empty() : any_decoded}));
      alternatives.push_back(
          Seq({branch.anchored_start ? Expr::Empty() : any, JsonStringContent(branch.expr),
               branch.anchored_end ? Expr::Empty() : any}));
    }
    if (absl::Status s = check_implied("pattern", Alt(std::move(decoded))); !s.ok()) return s;
    return Seq({quote, Alt(std::move(alternatives)), quote});
  }
  if (!format.empty()) {
    absl::StatusOr<Expr> content = StringFormatExpr(format);
    if (!content.ok()) return Error(at, std::string(content.status().message()));
    if (absl::Status s = check_implied("format", *content); !s.ok()) return s;
    return Seq({quote, *std::move(content), quote});
  }
  if (!has_length) return Helper("string");
  return Seq(
      {quote,
       Rep(Helper("char"), static_cast<int32_t>(*min_length), static_cast<int32_t>(*max_length)),
       quote});
}

absl::StatusOr<Expr> JsonSchemaConverter::IntegerBody(const Json& schema, const Place& at) {
  std::optional<int64_t> lo;
  std::optional<int64_t> hi;
  std::string lo_keyword;
  std::string hi_keyword;
  // Draft 4 spelled exclusive bounds as booleans beside minimum / maximum.
  const bool draft4_exclusive_min = schema.value("exclusiveMinimum", Json()) == Json(true);
  const bool draft4_exclusive_max = schema.value("exclusiveMaximum", Json()) == Json(true);
  for (const char* keyword : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
    if (!schema.contains(keyword) || schema[keyword].is_boolean()) continue;
    const std::string k = keyword;
    const bool lower = k == "minimum" || k == "exclusiveMinimum";
    const bool exclusive =
        k.starts_with("exclusive") || (lower ? draft4_exclusive_min : draft4_exclusive_max);
    // The least (greatest) integer the bound admits: ceil(x) for x <= v, floor(x) + 1 for
    // x < v, and the mirror images above.
    std::string error;
    std::optional<int64_t> v = IntegerBound(schema[keyword], lower != exclusive, &error);
    if (!v) return Error(at, absl::StrCat("keyword '", k, "' ", error));
    int64_t bound = *v;
    if (exclusive) {
      if (bound == (lower ? INT64_MAX : INT64_MIN)) {
        return Error(at, absl::StrCat("keyword '", k, "' leaves no 64-bit integer"));
      }
      bound += lower ? 1 : -1;
    }
    if (lower && (!lo || bound > *lo)) {
      lo = bound;
      lo_keyword = k;
    } else if (!lower && (!hi || bound < *hi)) {
      hi = bound;
      hi_keyword = k;
    }
  }
  if (schema.contains("format") && schema["format"].is_string()) {
    const std::string format = schema["format"].get<std::string>();
    std::optional<std::pair<int64_t, int64_t>> range;
    if (format == "int32") range = {{INT32_MIN, INT32_MAX}};
    if (format == "int64") range = {{INT64_MIN, INT64_MAX}};
    if (format == "uint32") range = {{0, UINT32_MAX}};
    if (!range) return Error(at, absl::StrCat("integer format '", format, "' is not supported"));
    if (!lo || range->first > *lo) lo = range->first, lo_keyword = "format";
    if (!hi || range->second < *hi) hi = range->second, hi_keyword = "format";
  }
  if (lo && hi && *lo > *hi) {
    return Error(at, absl::StrCat(lo_keyword, " ", schema.value(lo_keyword, Json(*lo)).dump(),
                                  " and ", hi_keyword, " ",
                                  schema.value(hi_keyword, Json(*hi)).dump(), " leave no integer"));
  }
  return IntegerRangeExpr(lo, hi);
}

absl::StatusOr<Expr> JsonSchemaConverter::NumberBody(const Json& schema, const Place& at) {
  std::optional<NumberBound> lo;
  std::optional<NumberBound> hi;
  const bool draft4_exclusive_min = schema.value("exclusiveMinimum", Json()) == Json(true);
  const bool draft4_exclusive_max = schema.value("exclusiveMaximum", Json()) == Json(true);
  for (const char* keyword : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
    if (!schema.contains(keyword) || schema[keyword].is_boolean()) continue;
    const std::string k = keyword;
    const bool lower = k == "minimum" || k == "exclusiveMinimum";
    if (!schema[keyword].is_number()) {
      return Error(at, absl::StrCat("keyword '", k, "' must be a number"));
    }
    // nlohmann writes a double in its shortest round-trip form, so 0.95 is the decimal 0.95.
    std::optional<Decimal> value = ParseDecimal(schema[keyword].dump());
    if (!value) {
      return Error(at, absl::StrCat("keyword '", k, "' ", schema[keyword].dump(),
                                    " is out of the supported range"));
    }
    const NumberBound bound{
        *std::move(value),
        k.starts_with("exclusive") || (lower ? draft4_exclusive_min : draft4_exclusive_max)};
    std::optional<NumberBound>& slot = lower ? lo : hi;
    const int order = slot ? CompareDecimals(bound.value, slot->value) : 0;
    const bool tighter =
        !slot || (lower ? order > 0 : order < 0) || (order == 0 && bound.exclusive);
    if (tighter) slot = bound;
  }
  if (schema.contains("format") && schema["format"].is_string()) {
    const std::string format = schema["format"].get<std::string>();
    // OpenAPI's storage hints: every JSON number we write is representable (approximately).
    if (format != "float" && format != "double") {
      return Error(at, absl::StrCat("number format '", format, "' is not supported"));
    }
  }
  if (!lo && !hi) return Helper("number");
  std::optional<Expr> range = NumberRangeExpr(lo, hi);
  if (!range) {
    return Error(at,
                 "minimum / exclusiveMinimum is greater than maximum / exclusiveMaximum: "
                 "no number is in range");
  }
  return *std::move(range);
}

}  // namespace expertmesh::grammar
