// The byte-level pushdown automaton a Grammar lowers to: one epsilon-free NFA per rule over
// bytes (code-point classes expanded to UTF-8 byte sequences, so a token may end inside a
// character), with edges that call other rules. Small rules whose sentences are short are inlined
// into their callers, because a token that runs past the end of a called rule can only be judged
// against the real stack at run time; everything that cannot reach its rule's end is pruned, so
// every live stack of a matcher can still complete.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_AUTOMATON_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_AUTOMATON_H_

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"

namespace expertmesh::grammar::engine_internal {

// "Cannot complete" in min-byte counts.
inline constexpr int64_t kInfiniteBytes = std::numeric_limits<int64_t>::max() / 4;

// 256 bits, one per byte value.
struct ByteSet {
  std::array<uint64_t, 4> words{};
  bool Has(uint8_t b) const { return (words[b >> 6] >> (b & 63)) & 1; }
  void Add(uint8_t b) { words[b >> 6] |= uint64_t{1} << (b & 63); }
  void AddRange(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) Add(static_cast<uint8_t>(b));
  }
  // True when something new was added.
  bool Merge(const ByteSet& o) {
    bool changed = false;
    for (int i = 0; i < 4; ++i) {
      const uint64_t w = words[i] | o.words[i];
      changed |= w != words[i];
      words[i] = w;
    }
    return changed;
  }
};

struct ByteEdge {
  uint8_t lo = 0;  // inclusive byte range
  uint8_t hi = 0;
  int32_t target = 0;
};

struct CallEdge {
  int32_t rule = 0;  // the callee
  int32_t ret = 0;   // the caller's node to continue at once the callee has matched
  // The return node only accepts (no edges): the call replaces the caller's frame instead of
  // pushing one, so right recursion runs in constant stack depth.
  bool tail = false;
};

struct AutomatonNode {
  int32_t rule = 0;
  bool accepting = false;       // the rule may end here
  std::vector<ByteEdge> bytes;  // sorted by lo
  std::vector<CallEdge> calls;
  int64_t min_bytes = 0;  // fewest bytes from here to the rule's end
};

struct Automaton {
  std::vector<AutomatonNode> nodes;
  std::vector<std::string> rule_names;  // the grammar's rule names, by rule index
  std::vector<int32_t> rule_start;      // start node per rule; -1 for rules never lowered
  std::vector<int64_t> rule_min_bytes;  // fewest bytes a rule matches (kInfiniteBytes: none)
  std::vector<ByteSet> follow;          // per rule: bytes that may come right after it
  std::vector<bool> follow_end;         // per rule: the text may end right after it
  int32_t root = 0;                     // rule index of the start rule

  int32_t root_start() const { return rule_start[root]; }
};

// Upper bound on automaton nodes: huge repeat counts would otherwise exhaust memory, and the
// router lowers every new client grammar on its request thread (2M nodes took 0.46 s there).
// The schema corpus's largest grammar has ~1,200 nodes; 512k leaves room for long literals
// and large enums, and the worker's CompileLimits refuse far fewer positions at a 150k vocabulary.
inline constexpr size_t kMaxAutomatonNodes = 1 << 19;

// Lowers `g`. INVALID_ARGUMENT with the rule and the problem for everything ValidateGrammar
// refuses (ValidateGrammar is this function's status).
absl::StatusOr<Automaton> BuildAutomaton(const Grammar& g);

}  // namespace expertmesh::grammar::engine_internal

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_AUTOMATON_H_
