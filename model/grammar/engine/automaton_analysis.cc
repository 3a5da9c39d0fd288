// Passes over the lowered automaton: fewest bytes to complete, left recursion, pruning, follow
// sets.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/grammar/engine/automaton_builder.h"

namespace expertmesh::grammar::engine_internal {
namespace {

int64_t AddBytes(int64_t a, int64_t b) {
  return a >= kInfiniteBytes || b >= kInfiniteBytes ? kInfiniteBytes : a + b;
}

}  // namespace

void ComputeMinBytes(Automaton* a) {
  for (AutomatonNode& n : a->nodes) n.min_bytes = kInfiniteBytes;
  a->rule_min_bytes.assign(a->rule_start.size(), kInfiniteBytes);
  bool changed = true;
  // Bellman-Ford style; nodes are numbered roughly in lowering order, so walking them backwards
  // settles most of a rule per round.
  while (changed) {
    changed = false;
    for (size_t i = a->nodes.size(); i-- > 0;) {
      AutomatonNode& n = a->nodes[i];
      int64_t m = n.accepting ? 0 : kInfiniteBytes;
      for (const ByteEdge& e : n.bytes) m = std::min(m, AddBytes(1, a->nodes[e.target].min_bytes));
      for (const CallEdge& c : n.calls) {
        m = std::min(m, AddBytes(a->rule_min_bytes[c.rule], a->nodes[c.ret].min_bytes));
      }
      if (m < n.min_bytes) {
        n.min_bytes = m;
        changed = true;
      }
    }
    for (size_t r = 0; r < a->rule_start.size(); ++r) {
      const int64_t m = a->nodes[a->rule_start[r]].min_bytes;
      if (m < a->rule_min_bytes[r]) {
        a->rule_min_bytes[r] = m;
        changed = true;
      }
    }
  }
}

absl::Status CheckLeftRecursion(const Automaton& a) {
  const size_t num_rules = a.rule_start.size();
  // calls_at_start[r]: rules r may call before consuming a byte.
  std::vector<std::vector<int32_t>> calls_at_start(num_rules);
  std::vector<uint32_t> seen(a.nodes.size(), 0);
  for (size_t r = 0; r < num_rules; ++r) {
    const uint32_t epoch = static_cast<uint32_t>(r + 1);
    std::vector<int32_t> work{a.rule_start[r]};
    seen[a.rule_start[r]] = epoch;
    while (!work.empty()) {
      const AutomatonNode& n = a.nodes[work.back()];
      work.pop_back();
      for (const CallEdge& c : n.calls) {
        calls_at_start[r].push_back(c.rule);
        if (a.rule_min_bytes[c.rule] == 0 && seen[c.ret] != epoch) {
          seen[c.ret] = epoch;
          work.push_back(c.ret);
        }
      }
    }
  }
  // Depth-first search for a cycle, iterative (rule chains may be long).
  std::vector<int8_t> color(num_rules, 0);  // 0 new, 1 on the path, 2 done
  for (size_t root = 0; root < num_rules; ++root) {
    if (color[root] != 0) continue;
    std::vector<std::pair<int32_t, size_t>> path{{static_cast<int32_t>(root), 0}};
    color[root] = 1;
    while (!path.empty()) {
      auto& [r, next] = path.back();
      if (next == calls_at_start[r].size()) {
        color[r] = 2;
        path.pop_back();
        continue;
      }
      const int32_t callee = calls_at_start[r][next++];
      if (color[callee] == 1) {
        std::vector<std::string> names;
        size_t i = 0;
        while (path[i].first != callee) ++i;
        for (; i < path.size(); ++i) names.push_back(a.rule_names[path[i].first]);
        names.push_back(a.rule_names[callee]);
        return absl::InvalidArgumentError(
            absl::StrCat("grammar: rule '", a.rule_names[callee],
                         "' is left-recursive: ", absl::StrJoin(names, " -> ")));
      }
      if (color[callee] == 0) {
        color[callee] = 1;
        path.push_back({callee, 0});
      }
    }
  }
  return absl::OkStatus();
}

absl::Status PruneAndCompact(Automaton* a) {
  if (a->nodes[a->root_start()].min_bytes >= kInfiniteBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: the root rule '", a->rule_names[a->root],
                     "' can never complete (it matches no finite string)"));
  }
  for (AutomatonNode& n : a->nodes) {
    std::erase_if(
        n.bytes, [&](const ByteEdge& e) { return a->nodes[e.target].min_bytes >= kInfiniteBytes; });
    std::erase_if(n.calls, [&](const CallEdge& c) {
      return a->rule_min_bytes[c.rule] >= kInfiniteBytes ||
             a->nodes[c.ret].min_bytes >= kInfiniteBytes;
    });
  }
  std::vector<int32_t> new_id(a->nodes.size(), -1);
  std::vector<int32_t> order;
  auto reach = [&](int32_t n) {
    if (new_id[n] < 0) {
      new_id[n] = static_cast<int32_t>(order.size());
      order.push_back(n);
    }
  };
  reach(a->root_start());
  for (size_t i = 0; i < order.size(); ++i) {
    const AutomatonNode& n = a->nodes[order[i]];
    for (const ByteEdge& e : n.bytes) reach(e.target);
    for (const CallEdge& c : n.calls) {
      reach(a->rule_start[c.rule]);
      reach(c.ret);
    }
  }
  std::vector<AutomatonNode> nodes(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    nodes[i] = std::move(a->nodes[order[i]]);
    for (ByteEdge& e : nodes[i].bytes) e.target = new_id[e.target];
    for (CallEdge& c : nodes[i].calls) c.ret = new_id[c.ret];
  }
  for (AutomatonNode& n : nodes) {
    for (CallEdge& c : n.calls) {
      const AutomatonNode& ret = nodes[c.ret];
      c.tail = ret.accepting && ret.bytes.empty() && ret.calls.empty();
    }
  }
  a->nodes = std::move(nodes);
  for (int32_t& s : a->rule_start) s = new_id[s];
  return absl::OkStatus();
}

void ComputeFollowSets(Automaton* a) {
  const size_t num_rules = a->rule_start.size();
  // first[n]: the bytes a non-empty continuation from node n to its rule's end may start with.
  std::vector<ByteSet> first(a->nodes.size());
  bool changed = true;
  while (changed) {
    changed = false;
    for (size_t i = a->nodes.size(); i-- > 0;) {
      const AutomatonNode& n = a->nodes[i];
      ByteSet s = first[i];
      for (const ByteEdge& e : n.bytes) s.AddRange(e.lo, e.hi);
      for (const CallEdge& c : n.calls) {
        s.Merge(first[a->rule_start[c.rule]]);
        if (a->rule_min_bytes[c.rule] == 0) s.Merge(first[c.ret]);
      }
      changed |= first[i].Merge(s);
    }
  }
  a->follow.assign(num_rules, ByteSet{});
  a->follow_end.assign(num_rules, false);
  a->follow_end[a->root] = true;
  changed = true;
  while (changed) {
    changed = false;
    for (const AutomatonNode& n : a->nodes) {
      for (const CallEdge& c : n.calls) {
        changed |= a->follow[c.rule].Merge(first[c.ret]);
        if (a->nodes[c.ret].min_bytes == 0) {
          changed |= a->follow[c.rule].Merge(a->follow[n.rule]);
          if (a->follow_end[n.rule] && !a->follow_end[c.rule]) {
            a->follow_end[c.rule] = true;
            changed = true;
          }
        }
      }
    }
  }
}

}  // namespace expertmesh::grammar::engine_internal
