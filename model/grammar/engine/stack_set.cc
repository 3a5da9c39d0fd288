#include "model/grammar/engine/stack_set.h"

#include <algorithm>

namespace expertmesh::grammar::engine_internal {
namespace {

uint64_t Key(int32_t node, int32_t parent) {
  return (uint64_t{static_cast<uint32_t>(node)} << 32) | static_cast<uint32_t>(parent);
}

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

bool StackRunner::Visit(int32_t frame) {
  if (static_cast<size_t>(frame) >= seen_.size()) {
    seen_.resize(std::max<size_t>(pool_->size(), static_cast<size_t>(frame) + 1) * 2, 0);
  }
  if (seen_[frame] == epoch_) return false;
  seen_[frame] = epoch_;
  return true;
}

void StackRunner::Close(std::span<const int32_t> frames, ClosedStacks* out) {
  out->clear();
  if (++epoch_ == 0) {
    std::fill(seen_.begin(), seen_.end(), 0);
    epoch_ = 1;
  }
  work_.clear();
  for (int32_t f : frames) {
    if (Visit(f)) work_.push_back(f);
  }
  while (!work_.empty()) {
    const int32_t f = work_.back();
    work_.pop_back();
    const Frame frame = pool_->at(f);  // a copy: Intern below may grow the pool
    const AutomatonNode& node = automaton_->nodes[frame.node];
    if (!node.bytes.empty()) out->tops.push_back(f);
    for (const CallEdge& call : node.calls) {
      // A tail call returns straight to the caller's caller: no frame for the caller.
      const int32_t parent = call.tail ? frame.parent : pool_->Intern(call.ret, frame.parent);
      const int32_t callee = pool_->Intern(automaton_->rule_start[call.rule], parent);
      if (Visit(callee)) work_.push_back(callee);
    }
    if (node.accepting) {
      if (frame.parent == kEndFrame) {
        out->can_end = true;
      } else if (frame.parent == kUnknownFrame) {
        out->escaped = true;
      } else if (Visit(frame.parent)) {
        work_.push_back(frame.parent);
      }
    }
  }
}

void StackRunner::Step(const ClosedStacks& in, uint8_t byte, std::vector<int32_t>* out) {
  out->clear();
  if (++epoch_ == 0) {
    std::fill(seen_.begin(), seen_.end(), 0);
    epoch_ = 1;
  }
  for (int32_t f : in.tops) {
    const int32_t node = pool_->at(f).node;
    const int32_t parent = pool_->at(f).parent;
    for (const ByteEdge& e : automaton_->nodes[node].bytes) {
      if (e.lo > byte) break;
      if (byte > e.hi) continue;
      const int32_t next = pool_->Intern(e.target, parent);
      if (Visit(next)) out->push_back(next);
    }
  }
}

int64_t StackRunner::MinBytes(const ClosedStacks& s) const {
  if (s.can_end) return 0;
  int64_t m = kInfiniteBytes;
  for (int32_t f : s.tops) m = std::min(m, pool_->at(f).min_bytes);
  return m;
}

}  // namespace expertmesh::grammar::engine_internal
