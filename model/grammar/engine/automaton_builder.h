// Internal to automaton.cc / automaton_analysis.cc: the automaton while it is built (with
// epsilon edges) and the passes over the finished one.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_AUTOMATON_BUILDER_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_AUTOMATON_BUILDER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "model/grammar/engine/automaton.h"

namespace expertmesh::grammar::engine_internal {

// Computes every node's min_bytes and every rule's rule_min_bytes (a fixpoint: a call costs its
// callee's fewest bytes).
void ComputeMinBytes(Automaton* a);

// INVALID_ARGUMENT naming the cycle when a rule can reach a call of itself without consuming a
// byte. REQUIRES: ComputeMinBytes ran.
absl::Status CheckLeftRecursion(const Automaton& a);

// Drops what can never complete (edges into nodes and calls of rules with no finite match) and
// what the root cannot reach, renumbering nodes; sets the tail flags. INVALID_ARGUMENT when the
// root itself cannot complete.
absl::Status PruneAndCompact(Automaton* a);

// Computes follow / follow_end. REQUIRES: PruneAndCompact ran.
void ComputeFollowSets(Automaton* a);

}  // namespace expertmesh::grammar::engine_internal

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_AUTOMATON_BUILDER_H_
