// Drives a GrammarMatcher and the ReferenceMatcher side by side along random walks and checks,
// at every step, everything the engine reports against the reference: the token mask (EOS,
// special, empty and padding ids included), CanTerminate, MinBytesToComplete,
// MinBytesToCompleteAfter, FillClosingBitmask, and that forbidden tokens are refused without
// changing the state.
#ifndef EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_WALK_CHECKER_H_
#define EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_WALK_CHECKER_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "model/grammar/ast.h"
#include "model/grammar/engine/compiled_grammar.h"

namespace expertmesh::grammar::testing {

struct WalkOptions {
  int32_t walks = 4;
  int32_t random_steps = 30;  // then tokens that shorten the completion, then EOS
  // Tokens whose MinBytesToCompleteAfter is compared per step (all when <= 0).
  int32_t budget_samples = 0;
  uint32_t seed = 1;
};

// Adds gtest failures; returns the number of steps checked. A walk on which the reference gives
// up (ReferenceMatcher::exploded) ends there, its last step unchecked.
int64_t CheckRandomWalks(const Grammar& g, std::shared_ptr<const CompiledGrammar> compiled,
                         const WalkOptions& options);

}  // namespace expertmesh::grammar::testing

#endif  // EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_WALK_CHECKER_H_
