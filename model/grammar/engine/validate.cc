#include "model/grammar/engine/validate.h"

#include "model/grammar/engine/automaton.h"

namespace expertmesh::grammar {

absl::Status ValidateGrammar(const Grammar& g) {
  return engine_internal::BuildAutomaton(g).status();
}

}  // namespace expertmesh::grammar
