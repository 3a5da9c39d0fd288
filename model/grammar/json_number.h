// JSON integers and numbers within bounds, as digit grammars: exact for any integer bounds
// within 64 bits and for any decimal number bounds (as the schema writes them). Used by
// json_schema.cc; the expressions hold no rule references.
#ifndef EXPERTMESH_MODEL_GRAMMAR_JSON_NUMBER_H_
#define EXPERTMESH_MODEL_GRAMMAR_JSON_NUMBER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// JSON integers (no leading zeros, no "-0") in [lo, hi]; an absent bound is unbounded.
// REQUIRES: lo <= hi when both are given.
Expr IntegerRangeExpr(std::optional<int64_t> lo, std::optional<int64_t> hi);

// A finite decimal: sign, integer digits without leading zeros ("0" for none), fraction digits
// without trailing zeros. Zero is never negative.
struct Decimal {
  bool negative = false;
  std::string integer = "0";
  std::string fraction;
  bool operator==(const Decimal&) const = default;
};

// A JSON number's text (as nlohmann's dump() writes it: "12", "-0.5", "1e-05", "2.5E+20") as a
// Decimal; nullopt for anything else or an exponent beyond +-400.
std::optional<Decimal> ParseDecimal(std::string_view text);

// -1, 0, 1 as a < b, a == b, a > b.
int CompareDecimals(const Decimal& a, const Decimal& b);

struct NumberBound {
  Decimal value;
  bool exclusive = false;
};

// JSON numbers whose value lies in the interval, written without an exponent (a bounded number
// is always written in plain decimal form; "-0" never); nullopt when the interval is empty.
std::optional<Expr> NumberRangeExpr(const std::optional<NumberBound>& lo,
                                    const std::optional<NumberBound>& hi);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_JSON_NUMBER_H_
