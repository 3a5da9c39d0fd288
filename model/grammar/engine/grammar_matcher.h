// The per-request state of constrained decoding: which tokens the grammar allows next, advancing
// by the sampled token, and how many bytes the grammar still needs to complete (for closing the
// output within max_tokens).
//
// One per request; not thread-safe (several matchers may share one CompiledGrammar across
// threads); cheap to create.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_GRAMMAR_MATCHER_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_GRAMMAR_MATCHER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/stack_set.h"

namespace expertmesh::grammar {

class GrammarMatcher {
 public:
  // REQUIRES: g is not null.
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> g);
  // A copy continues independently from the same state (e.g. to try a continuation and keep
  // the original). Not assignable or movable: the runner points into the matcher's own pool.
  GrammarMatcher(const GrammarMatcher& other);
  GrammarMatcher& operator=(const GrammarMatcher&) = delete;

  // Writes the allowed next tokens: bit (t % 32) of word t / 32 set = token t allowed. EOS ids
  // are allowed exactly where the grammar may end; special tokens and padding ids never; after
  // an accepted EOS nothing is allowed. REQUIRES: mask.size() >= vocab().mask_words() (extra
  // words are zeroed).
  void FillNextTokenBitmask(std::span<uint32_t> mask) const;

  // Advances by `token`. INVALID_ARGUMENT (state unchanged) when the mask forbids it or the
  // matcher is terminated.
  absl::Status AcceptToken(int32_t token);

  // The text so far is a complete sentence of the grammar.
  bool CanTerminate() const;
  // An EOS token was accepted.
  bool IsTerminated() const { return terminated_; }

  // Budget: the fewest bytes that complete the grammar from here (0 when CanTerminate;
  // 0 as well once terminated).
  int64_t MinBytesToComplete() const;
  // The same after `token`, counting the token's own bytes out: nullopt when the token is
  // forbidden; 0 for an EOS where the grammar may end.
  std::optional<int64_t> MinBytesToCompleteAfter(int32_t token) const;
  // Allowed tokens t with MinBytesToCompleteAfter(t) <= max_bytes_after (EOS where the grammar
  // may end). Slower than FillNextTokenBitmask: a trie walk pruned by the budget.
  // REQUIRES: mask.size() >= vocab().mask_words().
  void FillClosingBitmask(std::span<uint32_t> mask, int64_t max_bytes_after) const;

  // Number of stacks in the current state and the deepest one (for tests and metrics).
  int32_t num_stacks() const { return static_cast<int32_t>(state_.tops.size()); }
  int32_t max_stack_depth() const;
  // Frames held in the matcher's pool (live and not yet collected).
  int64_t num_frames() const { return static_cast<int64_t>(pool_.size()); }

  const CompiledGrammar& compiled() const { return *grammar_; }

 private:
  // Runs `bytes` from the current state; false when rejected. `out` is closed.
  bool Advance(std::string_view bytes, engine_internal::ClosedStacks* out) const;
  void CheckUncertain(const engine_internal::Stack& top, const NodeTokenMasks& m,
                      std::span<uint32_t> mask) const;
  void CollectGarbage();

  std::shared_ptr<const CompiledGrammar> grammar_;
  // Mutable: mask and budget walks intern scratch frames and drop them before returning.
  mutable engine_internal::FramePool pool_;
  mutable engine_internal::StackRunner runner_;
  mutable std::vector<uint32_t> scratch_bits_;  // a node's accepted set, when stored as rejects
  engine_internal::ClosedStacks state_;
  bool terminated_ = false;
  size_t gc_at_;  // pool size at which AcceptToken next tries to collect garbage
};

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_GRAMMAR_MATCHER_H_
