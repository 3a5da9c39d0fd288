// A test-only recognizer: does a grammar's language contain a string? Independent of the engine
// (engine/), so the front ends' tests check languages without a tokenizer or a matcher.
#ifndef EXPERTMESH_TESTS_MODEL_GRAMMAR_RECOGNIZER_H_
#define EXPERTMESH_TESTS_MODEL_GRAMMAR_RECOGNIZER_H_

#include <string_view>

#include "model/grammar/ast.h"

namespace expertmesh::grammar::testing {

// True when `text` (UTF-8) is a sentence of `g` (from g.root). Works on sets of end positions,
// memoized per (rule, position): exact for any grammar without left recursion (a left-recursive
// reference matches nothing here).
bool Recognize(const Grammar& g, std::string_view text);

}  // namespace expertmesh::grammar::testing

#endif  // EXPERTMESH_TESTS_MODEL_GRAMMAR_RECOGNIZER_H_
