// Building grammars out of grammars: a choice of fixed strings, one grammar inside another (tool
// calls: each tool's argument schema inside the call syntax), and free text up to a marker
// (reasoning: anything up to and including "</think>", then the constrained answer).
#ifndef EXPERTMESH_MODEL_GRAMMAR_COMPOSE_H_
#define EXPERTMESH_MODEL_GRAMMAR_COMPOSE_H_

#include <span>
#include <string>
#include <string_view>

#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// Exactly one of `choices` (no choices: a grammar whose language is empty, which the engine's
// ValidateGrammar refuses).
Grammar ChoiceGrammar(std::span<const std::string> choices);

// Copies `sub`'s rules into `into`, each renamed `<prefix>-<name>` (`<prefix><name>` when the
// prefix ends in '-' or '_'; made unique against `into`'s rules; characters of `prefix` outside
// [A-Za-z0-9_-] become '-'), with references rewritten.
// Returns a reference to the copy of `sub`'s root rule, to be used in `into`'s rules.
Expr Embed(Grammar& into, const Grammar& sub, std::string_view prefix);

// Any text up to and including the first occurrence of `marker`: a KMP automaton over `marker`'s
// code points written as right-recursive rules `<prefix>-0`, `<prefix>-1`, ... (one per code
// point; no '-' added after a prefix ending in '-' or '_') added to `into`. Returns a reference
// to its start; an empty marker gives Empty.
// REQUIRES: marker is valid UTF-8.
Expr TextThrough(Grammar& into, std::string_view marker, std::string_view prefix);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_COMPOSE_H_
