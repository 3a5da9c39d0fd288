// Sets of automaton stacks, the state a matcher (and a compile-time token walk) is in.
//
// A stack is its top (the automaton node where it stands) over a chain of lower frames
// (return node, parent frame). Lower frames are interned in a pool, so stacks that share their
// lower part share frames (a tree), and two stacks are equal exactly when their (top node,
// parent frame id) pairs are. Only calls create frames: consuming a byte inside a rule touches no
// pool at all, which is most of the work of a token walk.
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_STACK_SET_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_STACK_SET_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "model/grammar/engine/automaton.h"

namespace expertmesh::grammar::engine_internal {

// Parent of the root frame: popping to it ends the text.
inline constexpr int32_t kEndFrame = -1;
// Parent standing for an unknown caller (compile-time classification): popping to it means the
// token ran past the end of the rule it started in.
inline constexpr int32_t kUnknownFrame = -2;

// A lower frame: where its level continues once the level above it returns.
struct Frame {
  int32_t node = 0;
  int32_t parent = kEndFrame;
  // Fewest bytes that complete this frame and every frame below (an unknown caller counts 0).
  int64_t min_bytes = 0;
};

struct Stack {
  int32_t node = 0;            // the top: the current position
  int32_t parent = kEndFrame;  // frame id, kEndFrame or kUnknownFrame
  bool operator==(const Stack&) const = default;
};

class FramePool {
 public:
  explicit FramePool(const Automaton* automaton) : automaton_(automaton) {}

  int32_t Intern(int32_t node, int32_t parent);
  const Frame& at(int32_t id) const { return frames_[id]; }
  size_t size() const { return frames_.size(); }
  // Forgets every frame interned since size() was `mark` (scratch frames of a mask walk).
  void Truncate(size_t mark);
  void Clear();

 private:
  const Automaton* automaton_;
  std::vector<Frame> frames_;
  absl::flat_hash_map<uint64_t, int32_t> index_;
};

// A set of stacks after every call is expanded and every finished rule popped: the stacks whose
// top node has byte edges (the only ones that can consume a byte), and whether the text may end
// (a pop past the root) or, at compile time, run past the start rule (a pop to kUnknownFrame).
struct ClosedStacks {
  std::vector<Stack> tops;  // unique
  bool can_end = false;
  bool escaped = false;
  void clear() {
    tops.clear();
    can_end = false;
    escaped = false;
  }
};

// The two moves on stack sets. Holds scratch space: one per thread.
class StackRunner {
 public:
  StackRunner(const Automaton* automaton, FramePool* pool);

  // Expands `stacks` (tops that may sit at any node) into `out`.
  void Close(std::span<const Stack> stacks, ClosedStacks* out);
  // The stacks after `in` consumes `byte`, not yet closed (empty: the byte is rejected).
  void Step(const ClosedStacks& in, uint8_t byte, std::vector<Stack>* out) const;
  // Fewest bytes that complete the text from `s` (0 when it may end; kInfiniteBytes when empty).
  int64_t MinBytes(const ClosedStacks& s) const;
  int64_t MinBytes(const Stack& s) const;

  FramePool& pool() { return *pool_; }

 private:
  const Automaton* automaton_;
  FramePool* pool_;
  // Stacks already expanded by the running Close (a hash set once there are many).
  std::vector<Stack> seen_;
  absl::flat_hash_set<uint64_t> seen_set_;
  std::vector<Stack> work_;
  bool Visit(const Stack& s);
};

}  // namespace expertmesh::grammar::engine_internal

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_STACK_SET_H_
