#include "tests/model/grammar/recognizer.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model/grammar/utf8.h"

namespace expertmesh::grammar::testing {
namespace {

using Ends = std::set<size_t>;

class Recognizer {
 public:
  Recognizer(const Grammar& g, std::string_view text) : text_(text) {
    for (const Rule& rule : g.rules) rules_[rule.name] = &rule.body;
  }

  Ends MatchRule(const std::string& name, size_t pos) {
    const auto key = std::make_pair(name, pos);
    if (auto it = memo_.find(key); it != memo_.end()) return it->second;
    const auto rule = rules_.find(name);
    if (rule == rules_.end()) return {};
    memo_[key] = {};  // in progress: a left-recursive reference sees no match
    Ends ends = Match(*rule->second, pos);
    memo_[key] = ends;
    return ends;
  }

 private:
  Ends Match(const Expr& e, size_t pos) {
    switch (e.kind) {
      case Expr::Kind::kEmpty:
        return {pos};
      case Expr::Kind::kLiteral:
        if (text_.substr(pos).starts_with(e.text)) return {pos + e.text.size()};
        return {};
      case Expr::Kind::kCharClass: {
        if (pos >= text_.size()) return {};
        size_t next = pos;
        const int32_t cp = DecodeUtf8(text_, &next);
        if (cp < 0) return {};
        const bool in = std::any_of(e.ranges.begin(), e.ranges.end(), [&](const CodePointRange& r) {
          return static_cast<uint32_t>(cp) >= r.lo && static_cast<uint32_t>(cp) <= r.hi;
        });
        if (in != e.negated) return {next};
        return {};
      }
      case Expr::Kind::kRuleRef:
        return MatchRule(e.rule, pos);
      case Expr::Kind::kSequence: {
        Ends frontier = {pos};
        for (const Expr& item : e.items) {
          Ends next;
          for (size_t p : frontier) next.merge(Match(item, p));
          frontier = std::move(next);
          if (frontier.empty()) break;
        }
        return frontier;
      }
      case Expr::Kind::kChoice: {
        Ends ends;
        for (const Expr& item : e.items) ends.merge(Match(item, pos));
        return ends;
      }
      case Expr::Kind::kRepeat: {
        Ends result;
        if (e.min_count == 0) result.insert(pos);
        Ends frontier = {pos};
        for (int32_t count = 1; e.max_count == kUnbounded || count <= e.max_count; ++count) {
          Ends next;
          for (size_t p : frontier) next.merge(Match(e.items[0], p));
          if (count >= e.min_count) {
            // Past the minimum, a position seen before adds nothing new.
            Ends fresh;
            for (size_t p : next) {
              if (result.insert(p).second) fresh.insert(p);
            }
            next = std::move(fresh);
          }
          if (next.empty()) break;
          frontier = std::move(next);
        }
        return result;
      }
    }
    return {};
  }

  std::string_view text_;
  std::map<std::string, const Expr*> rules_;
  std::map<std::pair<std::string, size_t>, Ends> memo_;
};

}  // namespace

bool Recognize(const Grammar& g, std::string_view text) {
  return Recognizer(g, text).MatchRule(g.root, 0).contains(text.size());
}

}  // namespace expertmesh::grammar::testing
