#include "model/grammar/engine/stack_set.h"

#include <algorithm>

namespace expertmesh::grammar::engine_internal {
namespace {

uint64_t Key(int32_t node, int32_t parent) {
  return (uint64_t{static_cast<uint32_t>(node)} << 32) | static_cast<uint32_t>(parent);
}

// Sets this small are deduplicated by a linear scan; larger ones through a hash set.
constexpr size_t kLinearSetLimit = 16;

}  // namespace

int32_t FramePool::Intern(int32_t node, int32_t parent) {
  auto [it, inserted] = index_.try_emplace(Key(node, parent), static_cast<int32_t>(frames_.size()));
  if (inserted) {
    const int64_t below = parent >= 0 ? frames_[parent].min_bytes : 0;
    frames_.push_back({node, parent, automaton_->nodes[node].min_bytes + below});
  }
  return it->second;
}

void FramePool::Truncate(size_t mark) {
  for (size_t i = mark; i < frames_.size(); ++i) {
    index_.erase(Key(frames_[i].node, frames_[i].parent));
  }
  frames_.resize(mark);
}

void FramePool::Clear() {
  frames_.clear();
  index_.clear();
}

StackRunner::StackRunner(const Automaton* automaton, FramePool* pool)
    : automaton_(automaton), pool_(pool) {}

bool StackRunner::Visit(const Stack& s) {
  if (seen_.size() < kLinearSetLimit) {
    if (std::find(seen_.begin(), seen_.end(), s) != seen_.end()) return false;
    seen_.push_back(s);
    return true;
  }
  if (seen_set_.empty()) {
    for (const Stack& t : seen_) seen_set_.insert(Key(t.node, t.parent));
  }
  if (!seen_set_.insert(Key(s.node, s.parent)).second) return false;
  seen_.push_back(s);
  return true;
}

void StackRunner::Close(std::span<const Stack> stacks, ClosedStacks* out) {
  out->clear();
  if (stacks.size() == 1) {
    // The common case inside a rule: one stack at a node that neither calls nor ends a rule.
    const AutomatonNode& node = automaton_->nodes[stacks[0].node];
    if (node.calls.empty() && !node.accepting) {
      if (!node.bytes.empty()) out->tops.push_back(stacks[0]);
      return;
    }
  }
  seen_.clear();
  seen_set_.clear();
  work_.clear();
  for (const Stack& s : stacks) {
    if (Visit(s)) work_.push_back(s);
  }
  while (!work_.empty()) {
    const Stack s = work_.back();
    work_.pop_back();
    const AutomatonNode& node = automaton_->nodes[s.node];
    if (!node.bytes.empty()) out->tops.push_back(s);
    for (const CallEdge& call : node.calls) {
      // A tail call returns straight to the caller's caller: no frame for the caller.
      const int32_t parent = call.tail ? s.parent : pool_->Intern(call.ret, s.parent);
      const Stack callee{automaton_->rule_start[call.rule], parent};
      if (Visit(callee)) work_.push_back(callee);
    }
    if (node.accepting) {
      if (s.parent == kEndFrame) {
        out->can_end = true;
      } else if (s.parent == kUnknownFrame) {
        out->escaped = true;
      } else {
        const Frame& f = pool_->at(s.parent);
        const Stack popped{f.node, f.parent};
        if (Visit(popped)) work_.push_back(popped);
      }
    }
  }
}

void StackRunner::Step(const ClosedStacks& in, uint8_t byte, std::vector<Stack>* out) const {
  out->clear();
  for (const Stack& s : in.tops) {
    for (const ByteEdge& e : automaton_->nodes[s.node].bytes) {
      if (e.lo > byte) break;
      if (byte > e.hi) continue;
      const Stack next{e.target, s.parent};
      // Duplicates are rare and harmless here: Close removes them.
      out->push_back(next);
    }
  }
}

int64_t StackRunner::MinBytes(const Stack& s) const {
  const int64_t below = s.parent >= 0 ? pool_->at(s.parent).min_bytes : 0;
  return automaton_->nodes[s.node].min_bytes + below;
}

int64_t StackRunner::MinBytes(const ClosedStacks& s) const {
  if (s.can_end) return 0;
  int64_t m = kInfiniteBytes;
  for (const Stack& t : s.tops) m = std::min(m, MinBytes(t));
  return m;
}

}  // namespace expertmesh::grammar::engine_internal
