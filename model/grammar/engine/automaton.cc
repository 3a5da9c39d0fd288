#include "model/grammar/engine/automaton.h"

#include <algorithm>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/grammar/engine/automaton_builder.h"
#include "model/grammar/engine/utf8_ranges.h"

namespace expertmesh::grammar::engine_internal {
namespace {

// A rule is inlined into its callers when it is not recursive, all its sentences are at most
// this many bytes and its lowering is small: tokens routinely run past the end of such a rule
// (a JSON string character, a whitespace run), and inside the caller they stay
// context-independent instead of becoming uncertain at every use.
constexpr int64_t kInlineMaxSentenceBytes = 32;
constexpr int64_t kInlineMaxNodes = 128;
constexpr int64_t kUnboundedSize = int64_t{1} << 40;
// Expression trees nested deeper than this are refused (a request must not exhaust the stack).
constexpr int kMaxExprDepth = 1000;

int64_t SatAdd(int64_t a, int64_t b) { return std::min(a + b, kUnboundedSize); }
int64_t SatMul(int64_t a, int64_t b) {
  if (a == 0 || b == 0) return 0;
  return a >= kUnboundedSize / b ? kUnboundedSize : a * b;
}

struct RuleInfo {
  bool recursive = false;
  bool inline_ok = false;
  int64_t max_bytes = 0;  // longest sentence (kUnboundedSize: unbounded)
  int64_t size = 0;       // estimated nodes when inlined
};

class Lowering {
 public:
  explicit Lowering(const Grammar& g) : g_(g) {}

  absl::StatusOr<Automaton> Run() {
    absl::Status s = IndexRules();
    if (!s.ok()) return s;
    for (const Rule& r : g_.rules) {
      s = CheckExpr(r.name, r.body);
      if (!s.ok()) return s;
    }
    FindRecursion();
    for (size_t i = 0; i < g_.rules.size(); ++i) Analyze(static_cast<int32_t>(i));
    // Lower every rule (inlined ones too: they may be the root or be called when too big at
    // some call site; unreachable ones are dropped by PruneAndCompact).
    Automaton a;
    a.root = index_.at(g_.root);
    rule_start_.assign(g_.rules.size(), -1);
    rule_end_.assign(g_.rules.size(), -1);
    for (size_t i = 0; i < g_.rules.size(); ++i) {
      const int32_t rule = static_cast<int32_t>(i);
      const int32_t start = NewNode(rule);
      rule_start_[i] = start;
      absl::StatusOr<int32_t> end = Lower(g_.rules[i].body, start, rule, 0);
      if (!end.ok()) return end.status();
      rule_end_[i] = *end;
    }
    for (const Rule& r : g_.rules) a.rule_names.push_back(r.name);
    EliminateEpsilons(&a);
    return a;
  }

 private:
  struct BuildNode {
    int32_t rule = 0;
    std::vector<ByteEdge> bytes;
    std::vector<CallEdge> calls;
    std::vector<int32_t> eps;
  };

  absl::Status IndexRules() {
    for (size_t i = 0; i < g_.rules.size(); ++i) {
      if (!index_.emplace(g_.rules[i].name, static_cast<int32_t>(i)).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("grammar: rule '", g_.rules[i].name, "' is defined twice"));
      }
    }
    if (!index_.contains(g_.root)) {
      return absl::InvalidArgumentError(
          absl::StrCat("grammar: the root rule '", g_.root, "' is not defined"));
    }
    return absl::OkStatus();
  }

  absl::Status CheckExpr(const std::string& rule, const Expr& e, int depth = 0) {
    // The passes below recurse on the expression tree: bound it rather than the stack.
    if (depth > kMaxExprDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("grammar: rule '", rule, "' nests expressions deeper than ", kMaxExprDepth));
    }
    switch (e.kind) {
      case Expr::Kind::kRuleRef:
        if (!index_.contains(e.rule)) {
          return absl::InvalidArgumentError(
              absl::StrCat("grammar: rule '", rule, "' refers to undefined rule '", e.rule, "'"));
        }
        return absl::OkStatus();
      case Expr::Kind::kCharClass:
        for (const CodePointRange& r : e.ranges) {
          if (r.lo > r.hi || r.lo > kMaxCodePoint) {
            return absl::InvalidArgumentError(absl::StrCat(
                "grammar: rule '", rule, "' has an invalid character range ", r.lo, "-", r.hi));
          }
        }
        return absl::OkStatus();
      case Expr::Kind::kRepeat:
        if (e.items.size() != 1 || e.min_count < 0 ||
            (e.max_count != kUnbounded && e.max_count < e.min_count)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "grammar: rule '", rule, "' has an invalid repetition {", e.min_count, ",",
              e.max_count == kUnbounded ? std::string() : absl::StrCat(e.max_count), "}"));
        }
        return CheckExpr(rule, e.items[0], depth + 1);
      case Expr::Kind::kSequence:
      case Expr::Kind::kChoice:
        for (const Expr& item : e.items) {
          absl::Status s = CheckExpr(rule, item, depth + 1);
          if (!s.ok()) return s;
        }
        return absl::OkStatus();
      case Expr::Kind::kEmpty:
      case Expr::Kind::kLiteral:
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  static void CollectRefs(const Expr& e, std::vector<std::string_view>* out) {
    if (e.kind == Expr::Kind::kRuleRef) out->push_back(e.rule);
    for (const Expr& item : e.items) CollectRefs(item, out);
  }

  // Tarjan's strongly connected components over rule references: a rule is recursive when its
  // component has more than one rule or it refers to itself.
  void FindRecursion() {
    const int32_t n = static_cast<int32_t>(g_.rules.size());
    refs_.assign(n, {});
    for (int32_t i = 0; i < n; ++i) {
      std::vector<std::string_view> names;
      CollectRefs(g_.rules[i].body, &names);
      for (std::string_view name : names) refs_[i].push_back(index_.at(name));
    }
    info_.assign(n, {});
    std::vector<int32_t> order(n, -1), low(n, 0), stack;
    std::vector<bool> on_stack(n, false);
    int32_t counter = 0;
    // Iterative Tarjan: deep rule chains must not overflow the call stack.
    for (int32_t root = 0; root < n; ++root) {
      if (order[root] >= 0) continue;
      std::vector<std::pair<int32_t, size_t>> dfs{{root, 0}};
      order[root] = low[root] = counter++;
      stack.push_back(root);
      on_stack[root] = true;
      while (!dfs.empty()) {
        auto& [v, next] = dfs.back();
        if (next < refs_[v].size()) {
          const int32_t w = refs_[v][next++];
          if (order[w] < 0) {
            order[w] = low[w] = counter++;
            stack.push_back(w);
            on_stack[w] = true;
            dfs.push_back({w, 0});
          } else if (on_stack[w]) {
            low[v] = std::min(low[v], order[w]);
          }
          continue;
        }
        const int32_t done = v;
        dfs.pop_back();
        if (!dfs.empty()) low[dfs.back().first] = std::min(low[dfs.back().first], low[done]);
        if (low[done] == order[done]) {
          std::vector<int32_t> component;
          int32_t w;
          do {
            w = stack.back();
            stack.pop_back();
            on_stack[w] = false;
            component.push_back(w);
          } while (w != done);
          const bool self =
              std::find(refs_[done].begin(), refs_[done].end(), done) != refs_[done].end();
          if (component.size() > 1 || self) {
            for (int32_t c : component) info_[c].recursive = true;
          }
        }
      }
    }
  }

  // Fills info_[rule].max_bytes / size / inline_ok, callees first (non-recursive rules form a
  // DAG; recursive ones are never inlined and count as unbounded).
  void Analyze(int32_t rule) {
    std::vector<std::pair<int32_t, bool>> work{{rule, false}};
    while (!work.empty()) {
      auto [r, expanded] = work.back();
      work.pop_back();
      if (analyzed_.contains(r)) continue;
      if (info_[r].recursive) {
        info_[r].max_bytes = kUnboundedSize;
        info_[r].size = kUnboundedSize;
        analyzed_.insert(r);
        continue;
      }
      if (!expanded) {
        work.push_back({r, true});
        for (int32_t callee : refs_[r]) {
          if (!analyzed_.contains(callee)) work.push_back({callee, false});
        }
        continue;
      }
      const Expr& body = g_.rules[r].body;
      info_[r].max_bytes = MaxBytes(body);
      info_[r].size = Size(body);
      info_[r].inline_ok =
          info_[r].max_bytes <= kInlineMaxSentenceBytes && info_[r].size <= kInlineMaxNodes;
      analyzed_.insert(r);
    }
  }

  int64_t MaxBytes(const Expr& e) const {
    switch (e.kind) {
      case Expr::Kind::kEmpty:
        return 0;
      case Expr::Kind::kLiteral:
        return static_cast<int64_t>(e.text.size());
      case Expr::Kind::kCharClass: {
        int64_t m = 0;
        for (const CodePointRange& r : NormalizeClass(e.ranges, e.negated)) {
          m = std::max<int64_t>(m, Utf8Length(r.hi));
        }
        return m;
      }
      case Expr::Kind::kRuleRef:
        return info_[index_.at(e.rule)].max_bytes;
      case Expr::Kind::kSequence: {
        int64_t sum = 0;
        for (const Expr& item : e.items) sum = SatAdd(sum, MaxBytes(item));
        return sum;
      }
      case Expr::Kind::kChoice: {
        int64_t m = 0;
        for (const Expr& item : e.items) m = std::max(m, MaxBytes(item));
        return m;
      }
      case Expr::Kind::kRepeat: {
        const int64_t item = MaxBytes(e.items[0]);
        if (e.max_count == kUnbounded) return item == 0 ? 0 : kUnboundedSize;
        return SatMul(item, e.max_count);
      }
    }
    return 0;
  }

  int64_t Size(const Expr& e) const {
    switch (e.kind) {
      case Expr::Kind::kEmpty:
        return 0;
      case Expr::Kind::kLiteral:
        return static_cast<int64_t>(e.text.size());
      case Expr::Kind::kCharClass: {
        int64_t edges = 0;  // an upper bound on the nodes the sequences' paths need
        for (const Utf8Sequence& seq : Utf8Sequences(NormalizeClass(e.ranges, e.negated))) {
          edges += static_cast<int64_t>(seq.size());
        }
        return edges;
      }
      case Expr::Kind::kRuleRef: {
        const RuleInfo& info = info_[index_.at(e.rule)];
        return info.inline_ok ? info.size : 1;
      }
      case Expr::Kind::kSequence:
      case Expr::Kind::kChoice: {
        int64_t sum = 1;
        for (const Expr& item : e.items) sum = SatAdd(sum, Size(item));
        return sum;
      }
      case Expr::Kind::kRepeat: {
        const int64_t copies =
            e.max_count == kUnbounded ? int64_t{e.min_count} + 1 : int64_t{e.max_count};
        return SatAdd(1, SatMul(Size(e.items[0]), std::max<int64_t>(copies, 1)));
      }
    }
    return 0;
  }

  int32_t NewNode(int32_t rule) {
    nodes_.push_back({});
    nodes_.back().rule = rule;
    return static_cast<int32_t>(nodes_.size() - 1);
  }

  absl::Status TooBig() const {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar: the automaton exceeds ", kMaxAutomatonNodes,
                     " nodes (repetition counts or inlined rules too large)"));
  }

  // Lowers `e` starting at node `from` (of rule `rule`); returns the node where it ends.
  absl::StatusOr<int32_t> Lower(const Expr& e, int32_t from, int32_t rule, int depth) {
    if (nodes_.size() > kMaxAutomatonNodes) return TooBig();
    switch (e.kind) {
      case Expr::Kind::kEmpty:
        return from;
      case Expr::Kind::kLiteral: {
        int32_t at = from;
        for (char c : e.text) {
          const int32_t next = NewNode(rule);
          const uint8_t b = static_cast<uint8_t>(c);
          nodes_[at].bytes.push_back({b, b, next});
          at = next;
        }
        return at;
      }
      case Expr::Kind::kCharClass:
        return LowerClass(e, from, rule);
      case Expr::Kind::kRuleRef: {
        const int32_t callee = index_.at(e.rule);
        if (info_[callee].inline_ok) {
          return Lower(g_.rules[callee].body, from, rule, depth + 1);
        }
        const int32_t next = NewNode(rule);
        nodes_[from].calls.push_back({callee, next, false});
        return next;
      }
      case Expr::Kind::kSequence: {
        int32_t at = from;
        for (const Expr& item : e.items) {
          absl::StatusOr<int32_t> end = Lower(item, at, rule, depth + 1);
          if (!end.ok()) return end;
          at = *end;
        }
        return at;
      }
      case Expr::Kind::kChoice: {
        if (e.items.empty()) {
          // No alternative: a node with no way out (pruned as unable to complete).
          return NewNode(rule);
        }
        const int32_t end = NewNode(rule);
        for (const Expr& item : e.items) {
          // Each alternative starts on its own node so that loops inside one cannot reach
          // the others.
          const int32_t start = NewNode(rule);
          nodes_[from].eps.push_back(start);
          absl::StatusOr<int32_t> item_end = Lower(item, start, rule, depth + 1);
          if (!item_end.ok()) return item_end;
          nodes_[*item_end].eps.push_back(end);
        }
        return end;
      }
      case Expr::Kind::kRepeat: {
        int32_t at = from;
        for (int32_t i = 0; i < e.min_count; ++i) {
          const int32_t start = NewNode(rule);
          nodes_[at].eps.push_back(start);
          absl::StatusOr<int32_t> end = Lower(e.items[0], start, rule, depth + 1);
          if (!end.ok()) return end;
          at = *end;
        }
        if (e.max_count == kUnbounded) {
          const int32_t loop = NewNode(rule);
          nodes_[at].eps.push_back(loop);
          const int32_t start = NewNode(rule);
          nodes_[loop].eps.push_back(start);
          absl::StatusOr<int32_t> end = Lower(e.items[0], start, rule, depth + 1);
          if (!end.ok()) return end;
          nodes_[*end].eps.push_back(loop);
          return loop;
        }
        const int32_t done = NewNode(rule);
        for (int32_t i = e.min_count; i < e.max_count; ++i) {
          nodes_[at].eps.push_back(done);
          const int32_t start = NewNode(rule);
          nodes_[at].eps.push_back(start);
          absl::StatusOr<int32_t> end = Lower(e.items[0], start, rule, depth + 1);
          if (!end.ok()) return end;
          at = *end;
        }
        nodes_[at].eps.push_back(done);
        return done;
      }
    }
    return from;
  }

  // One path per UTF-8 byte-range sequence, sharing equal leading ranges.
  int32_t LowerClass(const Expr& e, int32_t from, int32_t rule) {
    const int32_t start = NewNode(rule);
    nodes_[from].eps.push_back(start);
    const int32_t end = NewNode(rule);
    absl::flat_hash_map<std::tuple<int32_t, uint8_t, uint8_t>, int32_t> child;
    for (const Utf8Sequence& seq : Utf8Sequences(NormalizeClass(e.ranges, e.negated))) {
      int32_t at = start;
      for (size_t i = 0; i < seq.size(); ++i) {
        const bool last = i + 1 == seq.size();
        if (last) {
          nodes_[at].bytes.push_back({seq[i].lo, seq[i].hi, end});
          break;
        }
        auto [it, inserted] = child.try_emplace({at, seq[i].lo, seq[i].hi}, 0);
        if (inserted) {
          it->second = NewNode(rule);
          nodes_[at].bytes.push_back({seq[i].lo, seq[i].hi, it->second});
        }
        at = it->second;
      }
    }
    return end;
  }

  // The final automaton's nodes are the rule starts and the targets of byte and call edges;
  // each takes the edges of its epsilon closure.
  void EliminateEpsilons(Automaton* a) {
    std::vector<int32_t> new_id(nodes_.size(), -1);
    std::vector<int32_t> order;
    auto keep = [&](int32_t old) {
      if (new_id[old] < 0) {
        new_id[old] = static_cast<int32_t>(order.size());
        order.push_back(old);
      }
    };
    for (int32_t s : rule_start_) keep(s);
    for (const BuildNode& n : nodes_) {
      for (const ByteEdge& b : n.bytes) keep(b.target);
      for (const CallEdge& c : n.calls) keep(c.ret);
    }
    std::vector<bool> is_end(nodes_.size(), false);
    for (int32_t e : rule_end_) is_end[e] = true;
    a->nodes.resize(order.size());
    std::vector<uint32_t> seen(nodes_.size(), 0);
    uint32_t epoch = 0;
    std::vector<int32_t> work;
    for (size_t i = 0; i < order.size(); ++i) {
      AutomatonNode& out = a->nodes[i];
      out.rule = nodes_[order[i]].rule;
      ++epoch;
      work.assign({order[i]});
      seen[order[i]] = epoch;
      while (!work.empty()) {
        const int32_t n = work.back();
        work.pop_back();
        const BuildNode& b = nodes_[n];
        if (is_end[n]) out.accepting = true;
        for (const ByteEdge& e : b.bytes) out.bytes.push_back({e.lo, e.hi, new_id[e.target]});
        for (const CallEdge& c : b.calls) out.calls.push_back({c.rule, new_id[c.ret], false});
        for (int32_t next : b.eps) {
          if (seen[next] != epoch) {
            seen[next] = epoch;
            work.push_back(next);
          }
        }
      }
      std::sort(out.bytes.begin(), out.bytes.end(), [](const ByteEdge& x, const ByteEdge& y) {
        return std::tie(x.lo, x.hi, x.target) < std::tie(y.lo, y.hi, y.target);
      });
      out.bytes.erase(std::unique(out.bytes.begin(), out.bytes.end(),
                                  [](const ByteEdge& x, const ByteEdge& y) {
                                    return x.lo == y.lo && x.hi == y.hi && x.target == y.target;
                                  }),
                      out.bytes.end());
      std::sort(out.calls.begin(), out.calls.end(), [](const CallEdge& x, const CallEdge& y) {
        return std::tie(x.rule, x.ret) < std::tie(y.rule, y.ret);
      });
      out.calls.erase(std::unique(out.calls.begin(), out.calls.end(),
                                  [](const CallEdge& x, const CallEdge& y) {
                                    return x.rule == y.rule && x.ret == y.ret;
                                  }),
                      out.calls.end());
    }
    a->rule_start.resize(rule_start_.size());
    for (size_t r = 0; r < rule_start_.size(); ++r) a->rule_start[r] = new_id[rule_start_[r]];
  }

  const Grammar& g_;
  absl::flat_hash_map<std::string_view, int32_t> index_;
  std::vector<std::vector<int32_t>> refs_;
  std::vector<RuleInfo> info_;
  absl::flat_hash_set<int32_t> analyzed_;
  std::vector<BuildNode> nodes_;
  std::vector<int32_t> rule_start_;
  std::vector<int32_t> rule_end_;
};

}  // namespace

absl::StatusOr<Automaton> BuildAutomaton(const Grammar& g) {
  absl::StatusOr<Automaton> a = Lowering(g).Run();
  if (!a.ok()) return a.status();
  ComputeMinBytes(&*a);
  absl::Status s = CheckLeftRecursion(*a);
  if (!s.ok()) return s;
  s = PruneAndCompact(&*a);
  if (!s.ok()) return s;
  ComputeFollowSets(&*a);
  return a;
}

}  // namespace expertmesh::grammar::engine_internal
