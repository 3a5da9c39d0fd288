// A deliberately naive matcher for tests: interprets the Grammar AST directly (no automaton, no
// inlining, no token tables), keeping every pending item of every derivation as an explicit
// stack. It is the brute-force reference the engine's masks and budgets are compared with.
#ifndef EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_REFERENCE_MATCHER_H_
#define EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_REFERENCE_MATCHER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "model/grammar/ast.h"

namespace expertmesh::grammar::testing {

inline constexpr int64_t kNoCompletion = int64_t{1} << 50;

class ReferenceMatcher {
 public:
  // REQUIRES: `g` is valid and not left-recursive; it must outlive the matcher.
  explicit ReferenceMatcher(const Grammar& g);

  // Consumes bytes; false (state unchanged) when the text so far could not be continued to a
  // complete sentence.
  bool Advance(std::string_view bytes);
  // The state after `bytes`, or false when they are rejected.
  bool CanAdvance(std::string_view bytes) const;
  bool CanEnd() const;
  // Fewest bytes that complete a sentence (kNoCompletion when none; never for a live state).
  int64_t MinBytes() const;
  // MinBytes after `bytes` (kNoCompletion when rejected).
  int64_t MinBytesAfter(std::string_view bytes) const;
  // MinBytesAfter of every token of `sorted` (byte strings in ascending order: tokens that share
  // a prefix share its work).
  std::vector<int64_t> MinBytesAfterEach(const std::vector<std::string_view>& sorted) const;
  // True once some state had more than kMaxConfigs derivations (a very ambiguous grammar): the
  // reference gave up and its answers since are meaningless.
  bool exploded() const { return exploded_; }
  static constexpr size_t kMaxConfigs = 20000;
  // Deepest item stack among the live derivations.
  size_t MaxDepth() const;

 private:
  struct Item {
    const Expr* e = nullptr;
    int32_t count = 0;  // literal: bytes matched; repeat: repetitions done; class: bytes read
    uint32_t cp = 0;    // class: code point bits read so far
    int32_t need = 0;   // class: encoded length of the code point being read
    auto operator<=>(const Item&) const = default;
  };
  using Config = std::vector<Item>;  // back() is matched next
  using State = std::set<Config>;

  State Normalize(const State& s) const;
  State Step(const State& s, uint8_t byte) const;
  int64_t MinLen(const Expr& e) const;
  int64_t ItemMin(const Item& it) const;
  int64_t ConfigMin(const Config& c) const;
  bool ClassHasIn(const Expr& e, uint32_t lo, uint32_t hi) const;

  const Grammar& g_;
  std::shared_ptr<const Expr> root_;  // a reference to the root rule
  std::map<std::string, const Expr*> rules_;
  std::map<std::string, int64_t> rule_min_;
  mutable bool exploded_ = false;
  State state_;  // normalized: every config's top is a literal or a class, or it is empty
};

}  // namespace expertmesh::grammar::testing

#endif  // EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_REFERENCE_MATCHER_H_
