#include "model/grammar/engine/token_classifier.h"

#include <algorithm>

namespace expertmesh::grammar::engine_internal {

NodeTokenMasks ClassifyNode(const Automaton& a, const TokenVocabulary& vocab, int32_t node,
                            StackRunner* runner, int64_t* steps) {
  FramePool& pool = runner->pool();
  const size_t mark = pool.size();
  const auto& trie = vocab.trie();
  const auto& sorted = vocab.sorted_text_tokens();
  const ByteSet& follow = a.follow[a.nodes[node].rule];

  std::vector<int32_t> accepted;
  std::vector<int32_t> uncertain;
  // states[d]: the stacks after the first d bytes of the current trie path, closed;
  // past_end[d]: some way of reading those bytes ran past the rule's end into its follow set,
  // so tokens below that the rule itself rejects still depend on the caller.
  std::vector<ClosedStacks> states(1);
  std::vector<uint8_t> past_end(1, 0);
  states[0].tops.push_back(Stack{node, kUnknownFrame});
  std::vector<Stack> pre;

  const int32_t n = static_cast<int32_t>(trie.size());
  for (int32_t i = 1; i < n;) {
    const TokenVocabulary::TrieNode& t = trie[i];
    const int32_t d = t.depth;
    const ClosedStacks& parent = states[d - 1];
    const bool depends = past_end[d - 1] || (parent.escaped && follow.Has(t.byte));
    runner->Step(parent, t.byte, &pre);
    ++*steps;
    if (pre.empty()) {
      if (depends) {
        auto [begin, end] = SubtreeTokens(vocab, i);
        for (int32_t k = begin; k < end; ++k) uncertain.push_back(sorted[k]);
      }
      i = t.subtree_end;
      continue;
    }
    for (int32_t k = t.tokens_begin; k < t.tokens_end; ++k) accepted.push_back(sorted[k]);
    if (t.subtree_end > i + 1) {
      if (states.size() <= static_cast<size_t>(d)) {
        states.resize(d + 1);
        past_end.resize(d + 1);
      }
      runner->Close(pre, &states[d]);
      past_end[d] = depends;
    }
    ++i;
  }
  pool.Truncate(mark);

  NodeTokenMasks m;
  const int64_t num_accepted = static_cast<int64_t>(accepted.size());
  const int64_t num_rejected =
      static_cast<int64_t>(sorted.size()) - num_accepted - static_cast<int64_t>(uncertain.size());
  const int64_t words = vocab.mask_words();
  if (num_accepted <= std::min(num_rejected, words)) {
    std::sort(accepted.begin(), accepted.end());
    m.form = NodeTokenMasks::Form::kAcceptedIds;
    m.ids = std::move(accepted);
  } else {
    std::vector<uint32_t> bits(words, 0);
    for (int32_t id : accepted) bits[id >> 5] |= uint32_t{1} << (id & 31);
    if (num_rejected <= words) {
      for (int32_t id : uncertain) bits[id >> 5] |= uint32_t{1} << (id & 31);
      m.form = NodeTokenMasks::Form::kRejectedIds;
      for (int32_t id : sorted) {
        if (!((bits[id >> 5] >> (id & 31)) & 1)) m.ids.push_back(id);
      }
      std::sort(m.ids.begin(), m.ids.end());
    } else {
      m.form = NodeTokenMasks::Form::kBitset;
      m.accepted_bits = std::move(bits);
    }
  }
  // `uncertain` is already in trie (byte) order, as the run-time walk needs.
  m.uncertain = std::move(uncertain);
  return m;
}

}  // namespace expertmesh::grammar::engine_internal
