// ParseGbnf: a recursive-descent parser over llama.cpp's GBNF (gbnf.h). Errors carry the line and
// column of the offending character so that a client sending a hand-written grammar can fix it.
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/utf8.h"

namespace expertmesh::grammar {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  absl::StatusOr<Grammar> Parse() {
    Grammar g;
    std::set<std::string> defined;
    SkipSpace();
    while (pos_ < text_.size()) {
      const size_t name_pos = pos_;
      std::string name = ReadName();
      if (name.empty()) return Error(pos_, "expected a rule name");
      SkipSpace();
      if (text_.substr(pos_, 3) != "::=") return Error(pos_, "expected '::=' after rule name");
      pos_ += 3;
      if (!defined.insert(name).second) {
        return Error(name_pos, absl::StrCat("rule '", name, "' is defined twice"));
      }
      absl::StatusOr<Expr> body = ParseAlternatives();
      if (!body.ok()) return body.status();
      if (pos_ < text_.size() && text_[pos_] == ')') return Error(pos_, "unbalanced ')'");
      g.rules.push_back(Rule{std::move(name), *std::move(body)});
    }
    if (!defined.contains("root")) return Error(text_.size(), "no 'root' rule");
    for (const auto& [name, ref_pos] : references_) {
      if (!defined.contains(name)) {
        return Error(ref_pos, absl::StrCat("undefined rule '", name, "'"));
      }
    }
    return g;
  }

 private:
  absl::Status Error(size_t pos, std::string_view message) const {
    size_t line = 1;
    size_t column = 1;
    for (size_t i = 0; i < pos && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("GBNF line ", line, ", column ", column, ": ", std::string(message)));
  }

  // Whitespace (newlines included) and # comments.
  void SkipSpace() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string ReadName() {
    const size_t start = pos_;
    while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  // A name followed by ::= starts the next rule and so ends the current one.
  bool AtRuleStart() const {
    size_t p = pos_;
    while (p < text_.size() && IsNameChar(text_[p])) ++p;
    if (p == pos_) return false;
    while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
    return text_.substr(p, 3) == "::=";
  }

  absl::StatusOr<Expr> ParseAlternatives() {
    std::vector<Expr> alternatives;
    while (true) {
      absl::StatusOr<Expr> sequence = ParseSequence();
      if (!sequence.ok()) return sequence.status();
      alternatives.push_back(*std::move(sequence));
      if (pos_ < text_.size() && text_[pos_] == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    if (alternatives.size() == 1) return std::move(alternatives[0]);
    return Expr::Choice(std::move(alternatives));
  }

  absl::StatusOr<Expr> ParseSequence() {
    std::vector<Expr> items;
    while (true) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] == '|' || text_[pos_] == ')' || AtRuleStart()) {
        break;
      }
      absl::StatusOr<Expr> item = ParsePrimary();
      if (!item.ok()) return item.status();
      absl::Status postfix = ParsePostfix(*item);
      if (!postfix.ok()) return postfix;
      items.push_back(*std::move(item));
    }
    if (items.empty()) return Expr::Empty();
    if (items.size() == 1) return std::move(items[0]);
    return Expr::Sequence(std::move(items));
  }

  absl::StatusOr<Expr> ParsePrimary() {
    const char c = text_[pos_];
    if (c == '"') return ParseLiteral();
    if (c == '[') return ParseClass();
    if (c == '.') {
      ++pos_;
      return Expr::CharClass({}, /*negated=*/true);
    }
    if (c == '(') {
      const size_t open = pos_++;
      // Grammars come from clients: bounded nesting keeps the recursion off the stack's end.
      if (++depth_ > kMaxNesting) return Error(open, "groups nested too deeply");
      absl::StatusOr<Expr> inner = ParseAlternatives();
      --depth_;
      if (!inner.ok()) return inner.status();
      if (pos_ >= text_.size() || text_[pos_] != ')') return Error(open, "unclosed '('");
      ++pos_;
      return inner;
    }
    if (IsNameChar(c)) {
      const size_t ref_pos = pos_;
      std::string name = ReadName();
      references_.emplace_back(name, ref_pos);
      return Expr::Ref(std::move(name));
    }
    return Error(pos_,
                 absl::StrCat("unexpected character '", std::string(text_.substr(pos_, 1)), "'"));
  }

  // Postfix operators, applied left to right: x*, x+, x?, x{m}, x{m,}, x{m,n}.
  absl::Status ParsePostfix(Expr& item) {
    for (int applied = 0; pos_ < text_.size(); ++applied) {
      const char c = text_[pos_];
      int32_t lo = 0;
      int32_t hi = kUnbounded;
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        lo = 1;
        ++pos_;
      } else if (c == '?') {
        hi = 1;
        ++pos_;
      } else if (c == '{') {
        const size_t open = pos_++;
        absl::StatusOr<int32_t> m = ParseCount();
        if (!m.ok()) return m.status();
        lo = hi = *m;
        if (pos_ < text_.size() && text_[pos_] == ',') {
          ++pos_;
          SkipInlineSpace();
          hi = kUnbounded;
          if (pos_ < text_.size() && text_[pos_] != '}') {
            absl::StatusOr<int32_t> n = ParseCount();
            if (!n.ok()) return n.status();
            hi = *n;
          }
        }
        if (pos_ >= text_.size() || text_[pos_] != '}') return Error(pos_, "expected '}'");
        ++pos_;
        if (hi != kUnbounded && hi < lo) {
          return Error(open, absl::StrCat("repetition {", lo, ",", hi, "} has max < min"));
        }
      } else {
        break;
      }
      // Each operator nests the item once more; a long run of them would nest without bound.
      if (applied == kMaxNesting) return Error(pos_, "too many repetition operators in a row");
      item = Expr::Repeat(std::move(item), lo, hi);
    }
    return absl::OkStatus();
  }

  void SkipInlineSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }

  absl::StatusOr<int32_t> ParseCount() {
    SkipInlineSpace();
    const size_t start = pos_;
    int64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      value = value * 10 + (text_[pos_++] - '0');
      if (value > kMaxGbnfRepeatCount) {
        return Error(start, absl::StrCat("repetition count over ", kMaxGbnfRepeatCount));
      }
    }
    if (pos_ == start) return Error(pos_, "expected a repetition count");
    SkipInlineSpace();
    return static_cast<int32_t>(value);
  }

  // One code point of a literal or class, escaped or raw (UTF-8).
  absl::StatusOr<uint32_t> ParseChar() {
    if (pos_ >= text_.size()) return Error(pos_, "unexpected end of grammar");
    if (text_[pos_] != '\\') {
      const size_t start = pos_;
      const int32_t cp = DecodeUtf8(text_, &pos_);
      if (cp < 0) return Error(start, "invalid UTF-8");
      return static_cast<uint32_t>(cp);
    }
    const size_t start = pos_++;
    if (pos_ >= text_.size()) return Error(start, "unexpected end of grammar after '\\'");
    const char e = text_[pos_++];
    int digits = 0;
    switch (e) {
      case 'n':
        return uint32_t{'\n'};
      case 't':
        return uint32_t{'\t'};
      case 'r':
        return uint32_t{'\r'};
      case '\\':
      case '"':
      case '[':
      case ']':
      case '-':
      case '^':
      case '/':
        return static_cast<uint32_t>(e);
      case 'x':
        digits = 2;
        break;
      case 'u':
        digits = 4;
        break;
      case 'U':
        digits = 8;
        break;
      default:
        return Error(start, absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
    }
    uint64_t value = 0;
    for (int i = 0; i < digits; ++i) {
      const int h = pos_ < text_.size() ? HexValue(text_[pos_]) : -1;
      if (h < 0)
        return Error(start, absl::StrCat("escape '\\", std::string(1, e), "' needs ", digits,
                                         " hex digits"));
      value = value * 16 + h;
      ++pos_;
    }
    if (value > kMaxCodePoint) return Error(start, "code point above U+10FFFF");
    return static_cast<uint32_t>(value);
  }

  absl::StatusOr<Expr> ParseLiteral() {
    const size_t open = pos_++;
    std::string text;
    while (true) {
      if (pos_ >= text_.size()) return Error(open, "unterminated string literal");
      if (text_[pos_] == '"') break;
      absl::StatusOr<uint32_t> cp = ParseChar();
      if (!cp.ok()) return cp.status();
      AppendUtf8(*cp, text);
    }
    ++pos_;
    if (text.empty()) return Expr::Empty();
    return Expr::Literal(std::move(text));
  }

  absl::StatusOr<Expr> ParseClass() {
    const size_t open = pos_++;
    bool negated = false;
    if (pos_ < text_.size() && text_[pos_] == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<CodePointRange> ranges;
    while (true) {
      if (pos_ >= text_.size()) return Error(open, "unterminated character class");
      if (text_[pos_] == ']') break;
      const size_t char_pos = pos_;
      absl::StatusOr<uint32_t> lo = ParseChar();
      if (!lo.ok()) return lo.status();
      uint32_t hi = *lo;
      if (pos_ + 1 < text_.size() && text_[pos_] == '-' && text_[pos_ + 1] != ']') {
        ++pos_;
        absl::StatusOr<uint32_t> end = ParseChar();
        if (!end.ok()) return end.status();
        hi = *end;
        if (hi < *lo) return Error(char_pos, "character range with end before start");
      }
      ranges.push_back({*lo, hi});
    }
    ++pos_;
    return Expr::CharClass(std::move(ranges), negated);
  }

  static constexpr int kMaxNesting = 256;

  std::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::vector<std::pair<std::string, size_t>> references_;
};

}  // namespace

absl::StatusOr<Grammar> ParseGbnf(std::string_view text) { return Parser(text).Parse(); }

}  // namespace expertmesh::grammar
