// Compile-time classification of the vocabulary at one automaton node: which tokens the node
// accepts whatever stack lies below it, and which may run past the end of the node's rule (into
// bytes in the rule's follow set) and so must be checked against the real stack at run time.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_TOKEN_CLASSIFIER_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_TOKEN_CLASSIFIER_H_

#include <cstdint>
#include <vector>

#include "model/grammar/engine/automaton.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/stack_set.h"
#include "model/grammar/engine/token_vocabulary.h"

namespace expertmesh::grammar::engine_internal {

// Walks the vocabulary trie once from a stack whose top is `node` and whose caller is unknown.
// `runner` (and its pool) is scratch; frames it interns are dropped before returning. Each trie
// step taken is counted in `*steps`.
// REQUIRES: the node has byte edges.
NodeTokenMasks ClassifyNode(const Automaton& a, const TokenVocabulary& vocab, int32_t node,
                            StackRunner* runner, int64_t* steps);

// The ids of sorted_text_tokens() in the subtree of trie node `i`: [begin, end).
inline std::pair<int32_t, int32_t> SubtreeTokens(const TokenVocabulary& vocab, int32_t i) {
  const auto& trie = vocab.trie();
  const int32_t end = trie[i].subtree_end;
  return {trie[i].tokens_begin, end < static_cast<int32_t>(trie.size())
                                    ? trie[end].tokens_begin
                                    : static_cast<int32_t>(vocab.sorted_text_tokens().size())};
}

}  // namespace expertmesh::grammar::engine_internal

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_TOKEN_CLASSIFIER_H_
