#include "model/grammar/expr_util.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace expertmesh::grammar {

namespace {

void AppendToSequence(Expr item, std::vector<Expr>& flat) {
  if (item.kind == Expr::Kind::kEmpty) return;
  if (item.kind == Expr::Kind::kSequence) {
    for (Expr& inner : item.items) AppendToSequence(std::move(inner), flat);
    return;
  }
  if (item.kind == Expr::Kind::kLiteral && !flat.empty() &&
      flat.back().kind == Expr::Kind::kLiteral) {
    flat.back().text += item.text;
    return;
  }
  flat.push_back(std::move(item));
}

}  // namespace

Expr Seq(std::vector<Expr> items) {
  std::vector<Expr> flat;
  for (Expr& item : items) AppendToSequence(std::move(item), flat);
  if (flat.empty()) return Expr::Empty();
  if (flat.size() == 1) return std::move(flat[0]);
  return Expr::Sequence(std::move(flat));
}

Expr Alt(std::vector<Expr> items) {
  std::vector<Expr> flat;
  for (Expr& item : items) {
    std::vector<Expr> parts;
    if (item.kind == Expr::Kind::kChoice) {
      parts = std::move(item.items);
    } else {
      parts.push_back(std::move(item));
    }
    for (Expr& part : parts) {
      // Identical alternatives add nothing to the language and only slow the engine down.
      if (std::find(flat.begin(), flat.end(), part) == flat.end()) flat.push_back(std::move(part));
    }
  }
  if (flat.size() == 1) return std::move(flat[0]);
  return Expr::Choice(std::move(flat));
}

Expr Lit(std::string text) {
  if (text.empty()) return Expr::Empty();
  return Expr::Literal(std::move(text));
}

Expr Rep(Expr item, int32_t min_count, int32_t max_count) {
  if (max_count == 0 || item.kind == Expr::Kind::kEmpty) return Expr::Empty();
  if (min_count == 1 && max_count == 1) return item;
  return Expr::Repeat(std::move(item), min_count, max_count);
}

Expr Opt(Expr item) { return Rep(std::move(item), 0, 1); }

Expr Range(uint32_t lo, uint32_t hi) { return Expr::CharClass({{lo, hi}}); }

std::string SanitizeRuleName(std::string_view text) {
  std::string name;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (ok) {
      name.push_back(c);
    } else if (!name.empty() && name.back() != '-') {
      name.push_back('-');
    }
  }
  while (!name.empty() && name.back() == '-') name.pop_back();
  return name.empty() ? "x" : name;
}

std::string UniqueRuleName(const Grammar& g, std::string_view base) {
  const auto taken = [&](std::string_view name) {
    return std::any_of(g.rules.begin(), g.rules.end(),
                       [&](const Rule& r) { return r.name == name; });
  };
  std::string name(base);
  for (int i = 2; taken(name); ++i) name = absl::StrCat(std::string(base), "-", i);
  return name;
}

}  // namespace expertmesh::grammar
