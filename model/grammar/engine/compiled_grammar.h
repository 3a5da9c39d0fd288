// A Grammar compiled against a vocabulary: the byte automaton plus, for every automaton node that
// can be the top of a stack, the tokens accepted there whatever the stack below (stored as a
// bitset or an id list, whichever is smaller) and the few uncertain tokens that run past the end
// of the node's rule and must be checked against the real stack at run time. All other tokens are
// rejected there. (The split of context-independent and context-dependent tokens is XGrammar's.)
//
// Immutable; shared across requests and threads.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_COMPILED_GRAMMAR_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_COMPILED_GRAMMAR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"
#include "model/grammar/engine/automaton.h"
#include "model/grammar/engine/token_vocabulary.h"

namespace expertmesh::grammar {

// The precomputed token classification of one automaton node, stored in whichever form is
// smallest: most nodes accept a handful of tokens (an id list), inside strings nearly all
// (the rejected ids), a few about half (a bitset).
struct NodeTokenMasks {
  enum class Form : uint8_t { kAcceptedIds, kRejectedIds, kBitset };
  Form form = Form::kAcceptedIds;
  // kAcceptedIds: the tokens accepted whatever the stack below, sorted.
  // kRejectedIds: the text tokens rejected whatever the stack below, sorted (accepted: every
  //   other text token not in `uncertain`).
  std::vector<int32_t> ids;
  // kBitset: the accepted tokens, mask_words() words.
  std::vector<uint32_t> accepted_bits;
  // Tokens that may run past the end of the node's rule; sorted by their bytes.
  std::vector<int32_t> uncertain;
};

struct CompileStats {
  int32_t nodes = 0;             // automaton nodes
  int32_t mask_nodes = 0;        // nodes with a token classification (possible stack tops)
  int64_t uncertain_tokens = 0;  // summed over mask_nodes
  int64_t table_bytes = 0;       // memory of the classification tables
  int64_t trie_steps = 0;        // vocabulary trie steps taken to classify (the compile's work)
  double seconds = 0;            // wall time of Compile
};

// What one compile may cost. A grammar comes from a client (a schema, a regex, GBNF), and its
// compile time and tables grow with its automaton positions times the vocabulary: the regex
// `.{2000}` alone takes 6.8e8 trie steps (5 s on two cores) at Qwen2's 151k tokens. Past a limit
// the compile stops and is refused with RESOURCE_EXHAUSTED rather than holding the worker's
// cores or memory. The largest grammar of the schema corpus (tests/data/structured) takes 2.2e7
// steps and 3.5 MB of tables there, so the defaults leave it ~18x and ~70x room.
struct CompileLimits {
  int64_t max_trie_steps = 400'000'000;
  int64_t max_table_bytes = int64_t{256} << 20;
};

class CompiledGrammar {
 public:
  // Validates and lowers `g` and classifies the vocabulary at every possible stack top.
  // INVALID_ARGUMENT as ValidateGrammar; `vocab` must not be null. RESOURCE_EXHAUSTED, saying
  // which limit, when classifying would pass `limits` (the work stops there).
  static absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(
      const Grammar& g, std::shared_ptr<const TokenVocabulary> vocab,
      const CompileLimits& limits = {});

  const TokenVocabulary& vocab() const { return *vocab_; }
  const engine_internal::Automaton& automaton() const { return automaton_; }
  // Classification of automaton node `node`; REQUIRES: the node has byte edges.
  const NodeTokenMasks& masks(int32_t node) const { return masks_[mask_index_[node]]; }
  const CompileStats& stats() const { return stats_; }

 private:
  CompiledGrammar() = default;

  std::shared_ptr<const TokenVocabulary> vocab_;
  engine_internal::Automaton automaton_;
  std::vector<int32_t> mask_index_;  // node -> index into masks_ (-1: no byte edges)
  std::vector<NodeTokenMasks> masks_;
  CompileStats stats_;
};

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_COMPILED_GRAMMAR_H_
