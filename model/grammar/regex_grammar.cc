#include "model/grammar/regex_grammar.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/grammar/expr_util.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/unicode_category.h"
#include "model/grammar/utf8.h"

namespace expertmesh::grammar {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const std::vector<CodePointRange> kDigit = {{'0', '9'}};
const std::vector<CodePointRange> kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
// ECMAScript's \s (JSON schema patterns are ECMA-262): \S must exclude every one of these, or a
// client's validator could see whitespace where the grammar allowed a non-space.
const std::vector<CodePointRange> kSpace = {
    {'\t', '\r'},     {' ', ' '},       {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};

// A class escape's ranges and whether it is negated (\D \W \S).
struct ClassEscape {
  std::vector<CodePointRange> ranges;
  bool negated = false;
};

class RegexParser {
 public:
  explicit RegexParser(std::string_view pattern) : p_(pattern) {}

  absl::StatusOr<std::vector<RegexBranch>> Parse() {
    std::vector<RegexBranch> branches;
    while (true) {
      RegexBranch branch;
      if (Peek('^')) {
        ++pos_;
        branch.anchored_start = true;
      }
      absl::StatusOr<Expr> expr = ParseSequence(/*top_level=*/true);
      if (!expr.ok()) return expr.status();
      branch.expr = *std::move(expr);
      if (Peek('$')) {
        ++pos_;
        branch.anchored_end = true;
      }
      branches.push_back(std::move(branch));
      if (Peek('|')) {
        ++pos_;
        continue;
      }
      if (pos_ < p_.size()) {
        if (p_[pos_] == ')') return Error("unbalanced ')'");
        return Error("anchor '$' is only supported at the end of the pattern");
      }
      return branches;
    }
  }

 private:
  absl::Status Error(std::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat("regex /", std::string(p_), "/ at offset ", pos_, ": ", std::string(message)));
  }
  bool Peek(char c) const { return pos_ < p_.size() && p_[pos_] == c; }

  absl::StatusOr<Expr> ParseAlternation() {
    std::vector<Expr> alternatives;
    while (true) {
      absl::StatusOr<Expr> sequence = ParseSequence(/*top_level=*/false);
      if (!sequence.ok()) return sequence.status();
      alternatives.push_back(*std::move(sequence));
      if (!Peek('|')) break;
      ++pos_;
    }
    return Alt(std::move(alternatives));
  }

  absl::StatusOr<Expr> ParseSequence(bool top_level) {
    std::vector<Expr> items;
    while (pos_ < p_.size()) {
      const char c = p_[pos_];
      if (c == '|' || c == ')') break;
      // A top-level $ ends the branch; anywhere else it is an error the caller reports.
      if (c == '$' || c == '^') {
        if (top_level && c == '$') break;
        return Error(absl::StrCat("anchor '", std::string(1, c),
                                  "' is only supported at the start or end of the pattern"));
      }
      absl::StatusOr<Expr> atom = ParseAtom();
      if (!atom.ok()) return atom.status();
      absl::StatusOr<Expr> quantified = ParseQuantifiers(*std::move(atom));
      if (!quantified.ok()) return quantified.status();
      items.push_back(*std::move(quantified));
    }
    return Seq(std::move(items));
  }

  // Whether the brace at pos_ starts {m}, {m,} or {m,n} (and not a literal brace).
  bool IsQuantifierBrace() {
    const size_t saved = pos_;
    int32_t lo = 0;
    int32_t hi = 0;
    const bool quantifier = ParseBraces(&lo, &hi);
    pos_ = saved;
    return quantifier;
  }

  // {m}, {m,}, {m,n} at pos_; false when the brace is a literal character (as in Python).
  bool ParseBraces(int32_t* lo, int32_t* hi) {
    size_t p = pos_ + 1;
    const auto number = [&](int32_t* out) {
      const size_t start = p;
      int64_t v = 0;
      while (p < p_.size() && p_[p] >= '0' && p_[p] <= '9') {
        v = std::min<int64_t>(v * 10 + (p_[p++] - '0'), int64_t{kMaxGbnfRepeatCount} + 1);
      }
      *out = static_cast<int32_t>(v);
      return p > start;
    };
    if (!number(lo)) return false;
    *hi = *lo;
    if (p < p_.size() && p_[p] == ',') {
      ++p;
      *hi = kUnbounded;
      if (p < p_.size() && p_[p] != '}' && !number(hi)) return false;
    }
    if (p >= p_.size() || p_[p] != '}') return false;
    pos_ = p + 1;
    return true;
  }

  absl::StatusOr<Expr> ParseQuantifiers(Expr atom) {
    while (pos_ < p_.size()) {
      int32_t lo = 0;
      int32_t hi = kUnbounded;
      const char c = p_[pos_];
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        lo = 1;
        ++pos_;
      } else if (c == '?') {
        hi = 1;
        ++pos_;
      } else if (c == '{') {
        if (!ParseBraces(&lo, &hi)) break;
        if (hi != kUnbounded && hi < lo) return Error("quantifier {m,n} with n < m");
        if (lo > kMaxGbnfRepeatCount || hi > kMaxGbnfRepeatCount) {
          return Error(absl::StrCat("quantifier count above ", kMaxGbnfRepeatCount));
        }
      } else {
        break;
      }
      if (Peek('?')) {
        ++pos_;  // lazy: same language
      } else if (Peek('+')) {
        return Error("possessive quantifiers are not supported");
      }
      atom = Rep(std::move(atom), lo, hi);
      // As in Python and JavaScript, a quantified atom takes no second quantifier ("a**").
      if (pos_ < p_.size() && (p_[pos_] == '*' || p_[pos_] == '+' || p_[pos_] == '?' ||
                               (p_[pos_] == '{' && IsQuantifierBrace()))) {
        return Error("multiple repeat");
      }
    }
    return atom;
  }

  absl::StatusOr<Expr> ParseGroup() {
    ++pos_;  // (
    if (Peek('?')) {
      const std::string_view rest = p_.substr(pos_ + 1);
      if (rest.starts_with(":")) {
        pos_ += 2;
      } else if (rest.starts_with("P<") ||
                 (rest.starts_with("<") && !rest.starts_with("<=") && !rest.starts_with("<!"))) {
        const size_t close = p_.find('>', pos_);
        if (close == std::string_view::npos) return Error("unterminated group name");
        pos_ = close + 1;
      } else if (rest.starts_with("=") || rest.starts_with("!")) {
        return Error("lookahead is not supported");
      } else if (rest.starts_with("<=") || rest.starts_with("<!")) {
        return Error("lookbehind is not supported");
      } else if (rest.starts_with("P=")) {
        return Error("backreference (?P=name) is not supported");
      } else if (rest.starts_with(">")) {
        return Error("atomic groups are not supported");
      } else {
        return Error("inline flags and other (? groups are not supported");
      }
    }
    // Patterns come from clients: bounded nesting keeps the recursion off the stack's end.
    if (++depth_ > kMaxNesting) return Error("groups nested too deeply");
    absl::StatusOr<Expr> inner = ParseAlternation();
    --depth_;
    if (!inner.ok()) return inner.status();
    if (!Peek(')')) return Error("unclosed '('");
    ++pos_;
    return inner;
  }

  absl::StatusOr<Expr> ParseAtom() {
    const char c = p_[pos_];
    if (c == '(') return ParseGroup();
    if (c == '[') return ParseClass();
    if (c == '.') {
      ++pos_;
      // ECMAScript's `.` (Python's excludes only \n): what both call a match.
      return Expr::CharClass({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}, /*negated=*/true);
    }
    if (c == '*' || c == '+' || c == '?') return Error("quantifier with nothing to repeat");
    if (c == '\\') {
      absl::StatusOr<ClassEscape> cls = ParseEscape(/*in_class=*/false);
      if (!cls.ok()) return cls.status();
      if (cls->ranges.size() == 1 && cls->ranges[0].lo == cls->ranges[0].hi && !cls->negated) {
        std::string text;
        AppendUtf8(cls->ranges[0].lo, text);
        return Expr::Literal(std::move(text));
      }
      return Expr::CharClass(std::move(cls->ranges), cls->negated);
    }
    const size_t start = pos_;
    const int32_t cp = DecodeUtf8(p_, &pos_);
    if (cp < 0) {
      pos_ = start;
      return Error("invalid UTF-8");
    }
    return Expr::Literal(std::string(p_.substr(start, pos_ - start)));
  }

  // After a backslash: a single code point (as a one-point range) or a class escape.
  absl::StatusOr<ClassEscape> ParseEscape(bool in_class) {
    ++pos_;  // backslash
    if (pos_ >= p_.size()) return Error("pattern ends with '\\'");
    const char e = p_[pos_++];
    const auto point = [](uint32_t cp) { return ClassEscape{{{cp, cp}}, false}; };
    switch (e) {
      case 'd':
        return ClassEscape{kDigit, false};
      case 'D':
        return ClassEscape{kDigit, true};
      case 'w':
        return ClassEscape{kWord, false};
      case 'W':
        return ClassEscape{kWord, true};
      case 's':
        return ClassEscape{kSpace, false};
      case 'S':
        return ClassEscape{kSpace, true};
      case 't':
        return point('\t');
      case 'n':
        return point('\n');
      case 'r':
        return point('\r');
      case 'f':
        return point('\f');
      case 'v':
        return point('\v');
      case '0':
        return point(0);
      case 'b':
        if (in_class) return point('\b');
        return Error("word boundary \\b is not supported");
      case 'B':
        return Error("word boundary \\B is not supported");
      case 'k':
        return Error("backreference \\k is not supported");
      case 'p':
      case 'P': {
        // \p{Lu}, \p{L}, or the one-letter form \pL.
        std::string name;
        if (Peek('{')) {
          const size_t close = p_.find('}', pos_);
          if (close == std::string_view::npos) return Error("unterminated \\p{...}");
          name = std::string(p_.substr(pos_ + 1, close - pos_ - 1));
          pos_ = close + 1;
        } else if (pos_ < p_.size()) {
          name = std::string(1, p_[pos_++]);
        }
        if (name.starts_with("General_Category=") || name.starts_with("gc=")) {
          name = name.substr(name.find('=') + 1);
        }
        std::optional<std::vector<CodePointRange>> ranges = UnicodeCategoryRanges(name);
        if (!ranges) {
          return Error(absl::StrCat("\\", std::string(1, e), "{", name,
                                    "}: only general categories (L, Lu, Nd, ...) are supported"));
        }
        return ClassEscape{*std::move(ranges), e == 'P'};
      }
      case 'A':
      case 'Z':
      case 'z':
      case 'G':
        return Error(absl::StrCat("anchor \\", std::string(1, e), " is not supported"));
      case 'x':
      case 'u': {
        uint64_t value = 0;
        if (e == 'u' && Peek('{')) {
          const size_t close = p_.find('}', pos_);
          if (close == std::string_view::npos || close == pos_ + 1) return Error("bad \\u{...}");
          for (size_t i = pos_ + 1; i < close; ++i) {
            const int h = HexValue(p_[i]);
            if (h < 0 || value > kMaxCodePoint) return Error("bad \\u{...}");
            value = value * 16 + h;
          }
          pos_ = close + 1;
        } else {
          const int digits = e == 'x' ? 2 : 4;
          for (int i = 0; i < digits; ++i) {
            const int h = pos_ < p_.size() ? HexValue(p_[pos_]) : -1;
            if (h < 0)
              return Error(absl::StrCat("\\", std::string(1, e), " needs ", digits, " hex digits"));
            value = value * 16 + h;
            ++pos_;
          }
        }
        if (value > kMaxCodePoint) return Error("code point above U+10FFFF");
        return point(static_cast<uint32_t>(value));
      }
      default:
        break;
    }
    if (e >= '1' && e <= '9') return Error("backreference is not supported");
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) {
      return Error(absl::StrCat("unknown escape \\", std::string(1, e)));
    }
    --pos_;
    const size_t start = pos_;
    const int32_t cp = DecodeUtf8(p_, &pos_);
    if (cp < 0) {
      pos_ = start;
      return Error("invalid UTF-8");
    }
    return point(static_cast<uint32_t>(cp));
  }

  absl::StatusOr<Expr> ParseClass() {
    const size_t open = pos_++;
    bool negated = false;
    if (Peek('^')) {
      negated = true;
      ++pos_;
    }
    std::vector<CodePointRange> ranges;
    std::vector<Expr> negated_parts;  // \D \W \S inside a class
    bool first = true;
    while (true) {
      if (pos_ >= p_.size()) {
        pos_ = open;
        return Error("unterminated character class");
      }
      if (p_[pos_] == ']' && !first) break;
      first = false;
      if (p_.substr(pos_).starts_with("[:")) return Error("POSIX classes are not supported");
      absl::StatusOr<uint32_t> lo = ClassPoint(ranges, negated_parts);
      if (!lo.ok()) return lo.status();
      if (*lo == kNoPoint) continue;
      uint32_t hi = *lo;
      if (pos_ + 1 < p_.size() && p_[pos_] == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        absl::StatusOr<uint32_t> end = ClassPoint(ranges, negated_parts);
        if (!end.ok()) return end.status();
        if (*end == kNoPoint) return Error("class escape as the end of a range");
        hi = *end;
        if (hi < *lo) return Error("character range out of order");
      }
      ranges.push_back({*lo, hi});
    }
    ++pos_;
    if (negated_parts.empty()) return Expr::CharClass(std::move(ranges), negated);
    if (negated) return Error("a negated class containing \\D, \\W or \\S is not supported");
    if (!ranges.empty()) {
      negated_parts.insert(negated_parts.begin(), Expr::CharClass(std::move(ranges)));
    }
    return Alt(std::move(negated_parts));
  }

  static constexpr uint32_t kNoPoint = 0xFFFFFFFF;

  // One code point inside a class; a class escape (\d ...) is added to `ranges` or
  // `negated_parts` directly and kNoPoint returned.
  absl::StatusOr<uint32_t> ClassPoint(std::vector<CodePointRange>& ranges,
                                      std::vector<Expr>& negated_parts) {
    if (p_[pos_] == '\\') {
      absl::StatusOr<ClassEscape> e = ParseEscape(/*in_class=*/true);
      if (!e.ok()) return e.status();
      if (e->negated) {
        negated_parts.push_back(Expr::CharClass(e->ranges, true));
        return kNoPoint;
      }
      if (e->ranges.size() == 1 && e->ranges[0].lo == e->ranges[0].hi) return e->ranges[0].lo;
      ranges.insert(ranges.end(), e->ranges.begin(), e->ranges.end());
      return kNoPoint;
    }
    const size_t start = pos_;
    const int32_t cp = DecodeUtf8(p_, &pos_);
    if (cp < 0) {
      pos_ = start;
      return Error("invalid UTF-8");
    }
    return static_cast<uint32_t>(cp);
  }

  static constexpr int kMaxNesting = 256;

  std::string_view p_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<RegexBranch>> ParseRegex(std::string_view pattern) {
  return RegexParser(pattern).Parse();
}

absl::StatusOr<Grammar> RegexToGrammar(std::string_view pattern) {
  absl::StatusOr<std::vector<RegexBranch>> branches = ParseRegex(pattern);
  if (!branches.ok()) return branches.status();
  std::vector<Expr> alternatives;
  for (RegexBranch& branch : *branches) alternatives.push_back(std::move(branch.expr));
  Grammar g;
  g.rules.push_back(Rule{"root", Alt(std::move(alternatives))});
  return g;
}

}  // namespace expertmesh::grammar
