#include "model/grammar/engine/compiled_grammar.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/grammar/engine/stack_set.h"
#include "model/grammar/engine/token_classifier.h"

namespace expertmesh::grammar {

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompiledGrammar::Compile(
    const Grammar& g, std::shared_ptr<const TokenVocabulary> vocab, const CompileLimits& limits) {
  if (vocab == nullptr) return absl::InvalidArgumentError("CompiledGrammar: no vocabulary");
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<engine_internal::Automaton> automaton = engine_internal::BuildAutomaton(g);
  if (!automaton.ok()) return automaton.status();

  std::shared_ptr<CompiledGrammar> c(new CompiledGrammar());
  c->vocab_ = std::move(vocab);
  c->automaton_ = std::move(*automaton);
  const engine_internal::Automaton& a = c->automaton_;
  std::vector<int32_t> mask_nodes;
  c->mask_index_.assign(a.nodes.size(), -1);
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    if (a.nodes[i].bytes.empty()) continue;
    c->mask_index_[i] = static_cast<int32_t>(mask_nodes.size());
    mask_nodes.push_back(static_cast<int32_t>(i));
  }
  c->masks_.resize(mask_nodes.size());

  // Nodes are independent: classify them on a few threads, each with its own scratch stacks.
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t num_threads =
      std::min<size_t>({static_cast<size_t>(hw), size_t{8}, (mask_nodes.size() + 7) / 8});
  std::atomic<size_t> next{0};
  // The work and memory so far, summed after each node; past a limit every thread stops.
  std::atomic<int64_t> trie_steps{0};
  std::atomic<int64_t> table_bytes{0};
  std::atomic<bool> over_limit{false};
  auto work = [&]() {
    engine_internal::FramePool pool(&a);
    engine_internal::StackRunner runner(&a, &pool);
    for (size_t k = next++; k < mask_nodes.size() && !over_limit.load(); k = next++) {
      int64_t steps = 0;
      NodeTokenMasks& m = c->masks_[k];
      m = engine_internal::ClassifyNode(a, *c->vocab_, mask_nodes[k], &runner, &steps);
      const int64_t bytes =
          static_cast<int64_t>(4 * (m.accepted_bits.size() + m.ids.size() + m.uncertain.size()));
      if (trie_steps.fetch_add(steps) + steps > limits.max_trie_steps ||
          table_bytes.fetch_add(bytes) + bytes > limits.max_table_bytes) {
        over_limit.store(true);
      }
    }
  };
  if (num_threads <= 1) {
    work();
  } else {
    std::vector<std::thread> threads;
    for (size_t t = 0; t < num_threads; ++t) threads.emplace_back(work);
    for (std::thread& t : threads) t.join();
  }

  if (over_limit.load()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("grammar too large to compile: its ", mask_nodes.size(),
                     " automaton positions over a vocabulary of ", c->vocab_->size(),
                     " tokens pass the limit of ", limits.max_trie_steps, " trie steps or ",
                     limits.max_table_bytes >> 20,
                     " MiB of token tables (simplify the schema, regex or grammar)"));
  }
  CompileStats& s = c->stats_;
  s.trie_steps = trie_steps.load();
  s.nodes = static_cast<int32_t>(a.nodes.size());
  s.mask_nodes = static_cast<int32_t>(mask_nodes.size());
  for (const NodeTokenMasks& m : c->masks_) {
    s.uncertain_tokens += static_cast<int64_t>(m.uncertain.size());
    s.table_bytes +=
        static_cast<int64_t>(4 * (m.accepted_bits.size() + m.ids.size() + m.uncertain.size()));
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return std::shared_ptr<const CompiledGrammar>(std::move(c));
}

}  // namespace expertmesh::grammar
