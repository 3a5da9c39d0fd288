// GBNF, llama.cpp's grammar text: the form in which the router sends a grammar to the worker.
//
//   root  ::= "{" ws pair ("," ws pair)* "}"   # comments run to the end of the line
//   pair  ::= [a-z]+ ":" ws [0-9]{1,3}
//   ws    ::= [ \t\n]{0,20}
//
// Rules are `name ::= alternatives` with names of [A-Za-z0-9_-]; a rule may span lines (it ends
// where the next `name ::=` begins). Terms: "literal" with escapes \n \t \r \\ \" \[ \] \xHH
// \uHHHH \UHHHHHHHH (each a code point, written as UTF-8), character classes [a-z0-9_] and
// negated [^"\\] with the same escapes, `.` (any code point), rule references, ( groups ),
// `|`, and the postfix operators * + ? {m} {m,} {m,n}. `root` is the start rule.
#ifndef EXPERTMESH_MODEL_GRAMMAR_GBNF_H_
#define EXPERTMESH_MODEL_GRAMMAR_GBNF_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// The largest m or n of a repetition {m,n} ParseGbnf accepts (front ends refuse larger counts).
inline constexpr int32_t kMaxGbnfRepeatCount = 1'000'000;

// Parses GBNF text. INVALID_ARGUMENT with "line L, column C" for a syntax error, a rule defined
// twice, a reference to an undefined rule, a missing `root`, or a repetition {m,n} with m > n or
// a count above kMaxGbnfRepeatCount.
//
// The AST is the text's structure: a group is its inner expression, a sequence or choice of one
// item is that item, "" is Empty, `.` is CharClass({}, negated = true).
absl::StatusOr<Grammar> ParseGbnf(std::string_view text);

// Prints `g` so that ParseGbnf gives it back: ParseGbnf(PrintGbnf(g)) == g for every grammar
// ParseGbnf returns and every grammar in expr_util.h's normal form (the front ends'); other
// grammars come back equivalent (e.g. a one-item sequence as its item, a literal "" as Empty).
// Literals must be valid UTF-8. When g.root is not "root", a rule `root ::= <g.root>` comes first.
//
// Every rule is printed on one line, in g's order; the same grammar always prints the same text
// (the worker caches compiled grammars by it).
std::string PrintGbnf(const Grammar& g);

// One expression in GBNF syntax (as it appears on the right of `::=`).
std::string PrintGbnfExpr(const Expr& e);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_GBNF_H_
