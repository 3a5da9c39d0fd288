// Regular expressions (JSON schema `pattern`, vLLM's guided_regex) as grammars.
//
// Supported: literals; escapes \d \D \w \W \s \S (as ECMAScript: ASCII digits and word
// characters, Unicode white space), \t \n \r \f \v \0, \xHH, \uHHHH, \u{H...}, Unicode general
// categories \p{L} \p{Lu} \pN \P{...} (negated), and an escaped punctuation character as
// itself; classes [a-z], negated [^...] with the same escapes inside; `.` (any code point but \n
// \r U+2028 U+2029, as in ECMAScript); groups (...), (?:...), (?P<name>...), (?<name>...);
// alternation; the quantifiers * + ? {m} {m,} {m,n} and their lazy forms (*? etc.: laziness
// changes which match a search prefers, never the language); ^ at the start and $ at the end of
// a top-level alternative.
//
// Refused with INVALID_ARGUMENT naming the construct: backreferences (\1, \k<n>, (?P=n)),
// lookahead and lookbehind, atomic groups, \b \B, possessive quantifiers (*+ etc.), a second
// quantifier on one atom (a**, as Python), inline flags ((?i)), scripts (\p{Greek}), POSIX
// classes, anchors anywhere else, counts above kMaxGbnfRepeatCount and groups nested deeper than
// 256.
#ifndef EXPERTMESH_MODEL_GRAMMAR_REGEX_GRAMMAR_H_
#define EXPERTMESH_MODEL_GRAMMAR_REGEX_GRAMMAR_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// One top-level alternative of a pattern and whether it was anchored with ^ / $.
struct RegexBranch {
  Expr expr;  // no rule references
  bool anchored_start = false;
  bool anchored_end = false;
};

absl::StatusOr<std::vector<RegexBranch>> ParseRegex(std::string_view pattern);

// The whole output must match `pattern` (as vLLM's guided_regex means it): anchors are accepted
// and change nothing. The grammar has the single rule `root`.
absl::StatusOr<Grammar> RegexToGrammar(std::string_view pattern);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_REGEX_GRAMMAR_H_
