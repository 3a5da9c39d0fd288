#include "model/grammar/engine/grammar_matcher.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "model/grammar/engine/token_classifier.h"

namespace expertmesh::grammar {

using engine_internal::ClosedStacks;
using engine_internal::kEndFrame;
using engine_internal::kInfiniteBytes;

namespace {

void SetBit(std::span<uint32_t> mask, int32_t id) { mask[id >> 5] |= uint32_t{1} << (id & 31); }
void ClearBit(std::vector<uint32_t>* mask, int32_t id) {
  (*mask)[id >> 5] &= ~(uint32_t{1} << (id & 31));
}
bool HasBit(std::span<const uint32_t> mask, int32_t id) { return (mask[id >> 5] >> (id & 31)) & 1; }

// Frames interned during a const walk are scratch: dropped when the walk ends.
class ScratchScope {
 public:
  explicit ScratchScope(engine_internal::FramePool* pool) : pool_(pool), mark_(pool->size()) {}
  ~ScratchScope() { pool_->Truncate(mark_); }

 private:
  engine_internal::FramePool* pool_;
  size_t mark_;
};

// Garbage frames (popped levels, rejected alternatives) are compacted away once the pool holds
// this many frames and several times the live ones.
constexpr size_t kGcMinFrames = 1 << 14;
constexpr size_t kGcRatio = 4;

}  // namespace

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> g)
    : grammar_(std::move(g)),
      pool_(&grammar_->automaton()),
      runner_(&grammar_->automaton(), &pool_),
      gc_at_(kGcMinFrames) {
  const engine_internal::Stack root{grammar_->automaton().root_start(), kEndFrame};
  runner_.Close(std::span<const engine_internal::Stack>(&root, 1), &state_);
}

GrammarMatcher::GrammarMatcher(const GrammarMatcher& other)
    : grammar_(other.grammar_),
      pool_(other.pool_),
      runner_(&grammar_->automaton(), &pool_),
      state_(other.state_),
      terminated_(other.terminated_),
      gc_at_(other.gc_at_) {}

bool GrammarMatcher::CanTerminate() const { return state_.can_end; }

int64_t GrammarMatcher::MinBytesToComplete() const {
  if (terminated_) return 0;
  return runner_.MinBytes(state_);
}

int32_t GrammarMatcher::max_stack_depth() const {
  int32_t deepest = 0;
  for (const engine_internal::Stack& top : state_.tops) {
    int32_t depth = 1;
    for (int32_t f = top.parent; f >= 0; f = pool_.at(f).parent) ++depth;
    deepest = std::max(deepest, depth);
  }
  return deepest;
}

bool GrammarMatcher::Advance(std::string_view bytes, ClosedStacks* out) const {
  ClosedStacks cur = state_;
  std::vector<engine_internal::Stack> pre;
  for (char c : bytes) {
    runner_.Step(cur, static_cast<uint8_t>(c), &pre);
    if (pre.empty()) return false;
    runner_.Close(pre, &cur);
  }
  *out = std::move(cur);
  return true;
}

void GrammarMatcher::FillNextTokenBitmask(std::span<uint32_t> mask) const {
  std::fill(mask.begin(), mask.end(), 0);
  if (terminated_) return;
  const CompiledGrammar& g = *grammar_;
  const int32_t words = g.vocab().mask_words();
  ScratchScope scratch(&pool_);
  // Context-independent part: the accepted set of every distinct top node.
  std::vector<int32_t> nodes;
  for (const engine_internal::Stack& top : state_.tops) {
    const int32_t node = top.node;
    if (std::find(nodes.begin(), nodes.end(), node) != nodes.end()) continue;
    nodes.push_back(node);
    const NodeTokenMasks& m = g.masks(node);
    switch (m.form) {
      case NodeTokenMasks::Form::kAcceptedIds:
        for (int32_t id : m.ids) SetBit(mask, id);
        break;
      case NodeTokenMasks::Form::kBitset:
        for (int32_t w = 0; w < words; ++w) mask[w] |= m.accepted_bits[w];
        break;
      case NodeTokenMasks::Form::kRejectedIds: {
        scratch_bits_ = g.vocab().text_bits();
        for (int32_t id : m.ids) ClearBit(&scratch_bits_, id);
        for (int32_t id : m.uncertain) ClearBit(&scratch_bits_, id);
        for (int32_t w = 0; w < words; ++w) mask[w] |= scratch_bits_[w];
        break;
      }
    }
  }
  // Context-dependent part: each stack judges its top node's uncertain tokens.
  for (const engine_internal::Stack& top : state_.tops) {
    const NodeTokenMasks& m = g.masks(top.node);
    if (!m.uncertain.empty()) CheckUncertain(top, m, mask);
  }
  if (state_.can_end) {
    for (int32_t id : g.vocab().eos_ids()) SetBit(mask, id);
  }
}

void GrammarMatcher::CheckUncertain(const engine_internal::Stack& top, const NodeTokenMasks& m,
                                    std::span<uint32_t> mask) const {
  const TokenVocabulary& vocab = grammar_->vocab();
  // Tokens are in byte order: each reuses the states of the prefix it shares with the previous.
  std::vector<ClosedStacks> states(1);
  states[0].tops.push_back(top);
  std::vector<engine_internal::Stack> pre;
  std::string_view prev;
  size_t valid = 0;    // states[0..valid] belong to prefixes of `prev`
  size_t dead_at = 0;  // > 0: the first dead_at bytes of `prev` are rejected
  for (int32_t id : m.uncertain) {
    if (HasBit(mask, id)) continue;
    const std::string_view s = vocab.token_bytes(id);
    size_t lcp = 0;
    while (lcp < s.size() && lcp < prev.size() && s[lcp] == prev[lcp]) ++lcp;
    if (dead_at > 0 && lcp >= dead_at) continue;  // starts with a rejected prefix
    dead_at = 0;
    valid = std::min(valid, lcp);
    prev = s;
    bool ok = true;
    for (size_t d = valid; d < s.size(); ++d) {
      runner_.Step(states[d], static_cast<uint8_t>(s[d]), &pre);
      if (pre.empty()) {
        dead_at = d + 1;
        ok = false;
        break;
      }
      if (states.size() <= d + 1) states.resize(d + 2);
      runner_.Close(pre, &states[d + 1]);
      valid = d + 1;
    }
    if (ok) SetBit(mask, id);
  }
}

absl::Status GrammarMatcher::AcceptToken(int32_t token) {
  const TokenVocabulary& vocab = grammar_->vocab();
  if (terminated_) {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: token ", token, " after the end of generation"));
  }
  if (token < 0 || token >= vocab.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: token ", token, " is outside the vocabulary of ", vocab.size()));
  }
  if (vocab.is_eos(token)) {
    if (!state_.can_end) {
      return absl::InvalidArgumentError(
          absl::StrCat("grammar: EOS token ", token, " before the grammar can end"));
    }
    terminated_ = true;
    return absl::OkStatus();
  }
  if (!vocab.is_text(token)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: token ", token, " is special, padding or empty and never allowed"));
  }
  ClosedStacks next;
  if (!Advance(vocab.token_bytes(token), &next)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: token ", token, " (\"",
                     absl::CEscape(absl::string_view(vocab.token_bytes(token).data(),
                                                     vocab.token_bytes(token).size())),
                     "\") is not allowed here"));
  }
  state_ = std::move(next);
  if (pool_.size() >= gc_at_) CollectGarbage();
  return absl::OkStatus();
}

std::optional<int64_t> GrammarMatcher::MinBytesToCompleteAfter(int32_t token) const {
  const TokenVocabulary& vocab = grammar_->vocab();
  if (terminated_ || token < 0 || token >= vocab.size()) return std::nullopt;
  if (vocab.is_eos(token)) return state_.can_end ? std::optional<int64_t>(0) : std::nullopt;
  if (!vocab.is_text(token)) return std::nullopt;
  ScratchScope scratch(&pool_);
  ClosedStacks next;
  if (!Advance(vocab.token_bytes(token), &next)) return std::nullopt;
  return runner_.MinBytes(next);
}

void GrammarMatcher::FillClosingBitmask(std::span<uint32_t> mask, int64_t max_bytes_after) const {
  std::fill(mask.begin(), mask.end(), 0);
  if (terminated_ || max_bytes_after < 0) return;
  const TokenVocabulary& vocab = grammar_->vocab();
  if (state_.can_end) {
    for (int32_t id : vocab.eos_ids()) SetBit(mask, id);
  }
  ScratchScope scratch(&pool_);
  const auto& trie = vocab.trie();
  const auto& sorted = vocab.sorted_text_tokens();
  std::vector<ClosedStacks> states(1, state_);
  std::vector<engine_internal::Stack> pre;
  const int32_t n = static_cast<int32_t>(trie.size());
  for (int32_t i = 1; i < n;) {
    const TokenVocabulary::TrieNode& t = trie[i];
    const int32_t d = t.depth;
    runner_.Step(states[d - 1], t.byte, &pre);
    if (pre.empty()) {
      i = t.subtree_end;
      continue;
    }
    if (states.size() <= static_cast<size_t>(d)) states.resize(d + 1);
    runner_.Close(pre, &states[d]);
    const int64_t need = runner_.MinBytes(states[d]);
    if (need <= max_bytes_after) {
      for (int32_t k = t.tokens_begin; k < t.tokens_end; ++k) SetBit(mask, sorted[k]);
    }
    // Each further byte lowers the bytes still needed by at most one.
    if (need - t.max_below > max_bytes_after) {
      i = t.subtree_end;
      continue;
    }
    ++i;
  }
}

void GrammarMatcher::CollectGarbage() {
  // Live frames: everything below the current tops.
  absl::flat_hash_map<int32_t, int32_t> remap;
  std::vector<int32_t> live;
  for (const engine_internal::Stack& top : state_.tops) {
    for (int32_t f = top.parent; f >= 0 && remap.emplace(f, -1).second; f = pool_.at(f).parent) {
      live.push_back(f);
    }
  }
  // Next attempt once the pool has doubled, so deep live stacks are not rescanned every token.
  gc_at_ = std::max(kGcMinFrames, 2 * pool_.size());
  if (pool_.size() < kGcRatio * live.size()) return;
  // Parents have smaller ids than their children: re-intern in id order.
  std::sort(live.begin(), live.end());
  std::vector<engine_internal::Frame> frames;
  for (int32_t f : live) frames.push_back(pool_.at(f));
  pool_.Clear();
  for (size_t i = 0; i < live.size(); ++i) {
    const int32_t parent = frames[i].parent >= 0 ? remap.at(frames[i].parent) : frames[i].parent;
    remap[live[i]] = pool_.Intern(frames[i].node, parent);
  }
  for (engine_internal::Stack& top : state_.tops) {
    if (top.parent >= 0) top.parent = remap.at(top.parent);
  }
  gc_at_ = std::max(kGcMinFrames, kGcRatio * pool_.size());
}

}  // namespace expertmesh::grammar
