#include "model/grammar/compose.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/grammar/expr_util.h"
#include "model/grammar/utf8.h"

namespace expertmesh::grammar {
namespace {

std::string RulePrefix(std::string_view prefix) {
  std::string out;
  for (char c : prefix) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    out.push_back(ok ? c : '-');
  }
  if (out.empty()) return "x-";
  // The separator before the rule's own name, unless the caller's prefix already ends in one.
  if (out.back() != '-' && out.back() != '_') out.push_back('-');
  return out;
}

Expr Renamed(const Expr& e, const std::map<std::string, std::string>& names) {
  Expr out = e;
  if (e.kind == Expr::Kind::kRuleRef) {
    if (auto it = names.find(e.rule); it != names.end()) out.rule = it->second;
  }
  for (Expr& item : out.items) item = Renamed(item, names);
  return out;
}

}  // namespace

Grammar ChoiceGrammar(std::span<const std::string> choices) {
  std::vector<Expr> alternatives;
  for (const std::string& choice : choices) alternatives.push_back(Lit(choice));
  Grammar g;
  g.rules.push_back(
      Rule{"root", alternatives.empty() ? Expr::Choice({}) : Alt(std::move(alternatives))});
  return g;
}

Expr Embed(Grammar& into, const Grammar& sub, std::string_view prefix) {
  const std::string base = RulePrefix(prefix);
  std::map<std::string, std::string> names;
  // Names are chosen for all rules first, so that every added rule already blocks its name.
  for (const Rule& rule : sub.rules) {
    std::string name = UniqueRuleName(into, absl::StrCat(base, rule.name));
    names[rule.name] = name;
    into.rules.push_back(Rule{std::move(name), Expr::Empty()});
  }
  const size_t first = into.rules.size() - sub.rules.size();
  for (size_t i = 0; i < sub.rules.size(); ++i) {
    into.rules[first + i].body = Renamed(sub.rules[i].body, names);
  }
  const auto root = names.find(sub.root);
  return Expr::Ref(root != names.end() ? root->second : absl::StrCat(base, sub.root));
}

Expr TextThrough(Grammar& into, std::string_view marker, std::string_view prefix) {
  std::vector<uint32_t> m;
  for (size_t pos = 0; pos < marker.size();) {
    const int32_t cp = DecodeUtf8(marker, &pos);
    m.push_back(cp < 0 ? 0xFFFD : static_cast<uint32_t>(cp));
  }
  if (m.empty()) return Expr::Empty();
  const size_t n = m.size();
  // KMP failure function: fail[q] = length of the longest proper border of m[0..q).
  std::vector<size_t> fail(n + 1, 0);
  for (size_t q = 2; q <= n; ++q) {
    size_t k = fail[q - 1];
    while (k > 0 && m[k] != m[q - 1]) k = fail[k];
    if (m[k] == m[q - 1]) ++k;
    fail[q] = k;
  }
  // delta(q, c): the state after reading c with q marker code points matched (q < n).
  const auto delta = [&](size_t q, uint32_t c) {
    while (q > 0 && m[q] != c) q = fail[q];
    return m[q] == c ? q + 1 : 0;
  };
  std::vector<uint32_t> alphabet = m;
  std::sort(alphabet.begin(), alphabet.end());
  alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());

  const std::string base = RulePrefix(prefix);
  std::vector<std::string> names;
  for (size_t q = 0; q < n; ++q) {
    names.push_back(UniqueRuleName(into, absl::StrCat(base, q)));
    into.rules.push_back(Rule{names.back(), Expr::Empty()});
  }
  const size_t first = into.rules.size() - n;
  for (size_t q = 0; q < n; ++q) {
    std::vector<Expr> alternatives;
    std::vector<CodePointRange> leaving;  // code points that do not fall back to state 0
    for (uint32_t c : alphabet) {
      const size_t next = delta(q, c);
      if (next == 0) continue;
      leaving.push_back({c, c});
      std::string text;
      AppendUtf8(c, text);
      alternatives.push_back(
          Seq({Lit(std::move(text)), next == n ? Expr::Empty() : Expr::Ref(names[next])}));
    }
    alternatives.insert(
        alternatives.begin(),
        Seq({Expr::CharClass(std::move(leaving), /*negated=*/true), Expr::Ref(names[0])}));
    into.rules[first + q].body = Alt(std::move(alternatives));
  }
  return Expr::Ref(names[0]);
}

}  // namespace expertmesh::grammar
