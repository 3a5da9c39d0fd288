// Builders that keep expressions in the normal form ParseGbnf produces, so that every front end's
// grammar survives ParseGbnf(PrintGbnf(g)) == g unchanged: a sequence or choice of one item is
// that item, an empty sequence is Empty, nested sequences (choices) are flattened, and adjacent
// literals of a sequence are joined.
#ifndef EXPERTMESH_MODEL_GRAMMAR_EXPR_UTIL_H_
#define EXPERTMESH_MODEL_GRAMMAR_EXPR_UTIL_H_

#include <string>
#include <vector>

#include "model/grammar/ast.h"

namespace expertmesh::grammar {

Expr Seq(std::vector<Expr> items);
Expr Alt(std::vector<Expr> items);
// A literal; the empty string is Empty.
Expr Lit(std::string text);
// item{min,max}; {1,1} is the item itself, {0,0} Empty.
Expr Rep(Expr item, int32_t min_count, int32_t max_count);
Expr Opt(Expr item);
// One code point in [lo, hi].
Expr Range(uint32_t lo, uint32_t hi);

// A rule name made of [A-Za-z0-9-] only from arbitrary text (JSON pointer parts, definition
// names): other bytes become '-', runs of '-' collapse, and an empty result is "x".
std::string SanitizeRuleName(std::string_view text);

// `base` if no rule of `g` has that name, else base-2, base-3, ... (the first free one).
std::string UniqueRuleName(const Grammar& g, std::string_view base);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_EXPR_UTIL_H_
