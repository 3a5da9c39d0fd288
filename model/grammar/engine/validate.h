// Checks a Grammar before any vocabulary is involved, so the router can refuse a bad constraint
// with a clear message before a request reaches a worker.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_VALIDATE_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_VALIDATE_H_

#include "absl/status/status.h"
#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// OK when `g` can be compiled: the root and every referenced rule are defined (once), no rule is
// left-recursive (directly, indirectly, or through rules that can match the empty string), the
// character classes and repeat counts are well-formed, the automaton stays within its size
// limit, and the root can produce at least one finite string. Otherwise INVALID_ARGUMENT naming
// the rule and the problem (e.g. "rule 'a' is left-recursive: a -> b -> a").
absl::Status ValidateGrammar(const Grammar& g);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_VALIDATE_H_
