#include "model/grammar/json_primitives.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/grammar/expr_util.h"

namespace expertmesh::grammar {
namespace {

Expr Digits() { return Range('0', '9'); }

Expr Hex(int32_t n) { return Rep(Expr::CharClass({{'0', '9'}, {'A', 'F'}, {'a', 'f'}}), n, n); }

Expr TwoDigits(char first_lo, char first_hi, char second_lo, char second_hi) {
  return Seq({Range(first_lo, first_hi), Range(second_lo, second_hi)});
}

// RFC 3339 full-date with each month's real length and February 29 only in leap years (a client's
// validator, e.g. Python's, parses the date).
Expr DateExpr() {
  const auto two = [](std::string_view first, std::string_view second) {
    std::vector<CodePointRange> a;
    for (char c : first) a.push_back({static_cast<uint32_t>(c), static_cast<uint32_t>(c)});
    std::vector<CodePointRange> b;
    for (char c : second) b.push_back({static_cast<uint32_t>(c), static_cast<uint32_t>(c)});
    return Seq({Expr::CharClass(std::move(a)), Expr::CharClass(std::move(b))});
  };
  const Expr day_01_09 = Seq({Lit("0"), Range('1', '9')});
  const Expr day_10_29 = TwoDigits('1', '2', '0', '9');
  const Expr day31 = Alt({day_01_09, day_10_29, Seq({Lit("3"), Range('0', '1')})});
  const Expr day30 = Alt({day_01_09, day_10_29, Lit("30")});
  const Expr day28 = Alt({day_01_09, Seq({Lit("1"), Digits()}), Seq({Lit("2"), Range('0', '8')})});
  const Expr month31 = Alt({two("0", "13578"), two("1", "02")});
  const Expr month30 = Alt({two("0", "469"), Lit("11")});
  // Leap years: divisible by 4 but not by 100 (last two digits), or divisible by 400.
  const Expr leap_year = Alt(
      {Seq({Rep(Digits(), 2, 2), Alt({two("02468", "48"), two("13579", "26"), two("2468", "0")})}),
       Seq({Alt({two("02468", "048"), two("13579", "26")}), Lit("00")})});
  return Alt({Seq({Rep(Digits(), 4, 4), Lit("-"),
                   Alt({Seq({month31, Lit("-"), day31}), Seq({month30, Lit("-"), day30}),
                        Seq({Lit("02-"), day28})})}),
              Seq({leap_year, Lit("-02-29")})});
}

Expr TimeExpr() {
  const Expr hour = Alt({TwoDigits('0', '1', '0', '9'), Seq({Lit("2"), Range('0', '3')})});
  const Expr minute = TwoDigits('0', '5', '0', '9');
  // RFC 3339 allows second 60 only at a real leap second, which depends on the date: validators
  // that check it (Python's rfc3339-validator) refuse it in a bare time, so it is never produced.
  const Expr second = minute;
  const Expr offset =
      Alt({Expr::CharClass({{'Z', 'Z'}, {'z', 'z'}}),
           Seq({Expr::CharClass({{'+', '+'}, {'-', '-'}}), hour, Lit(":"), minute})});
  return Seq({hour, Lit(":"), minute, Lit(":"), second,
              Opt(Seq({Lit("."), Rep(Digits(), 1, kUnbounded)})), offset});
}

Expr HostLabel() {
  const Expr alnum = Expr::CharClass({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}});
  const Expr inner = Expr::CharClass({{'-', '-'}, {'0', '9'}, {'A', 'Z'}, {'a', 'z'}});
  return Seq({alnum, Opt(Seq({Rep(inner, 0, 61), alnum}))});
}

std::vector<CodePointRange> Normalize(std::vector<CodePointRange> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const CodePointRange& x, const CodePointRange& y) { return x.lo < y.lo; });
  std::vector<CodePointRange> merged;
  for (const CodePointRange& r : ranges) {
    if (!merged.empty() && r.lo <= merged.back().hi + 1) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

std::vector<CodePointRange> Complement(const std::vector<CodePointRange>& sorted) {
  std::vector<CodePointRange> out;
  uint32_t next = 0;
  for (const CodePointRange& r : sorted) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
  return out;
}

Expr ClassAsJsonContent(const Expr& e) {
  std::vector<CodePointRange> set = Normalize(e.ranges);
  if (e.negated) set = Complement(set);
  // Code points a JSON string cannot hold raw, and surrogates (never valid UTF-8 text).
  const std::vector<CodePointRange> unsafe = {
      {0x00, 0x1F}, {'"', '"'}, {'\\', '\\'}, {0xD800, 0xDFFF}};
  std::vector<CodePointRange> safe;
  std::vector<Expr> alternatives;
  for (CodePointRange r : set) {
    for (uint32_t cp = r.lo; cp <= std::min<uint32_t>(r.hi, 0x7F); ++cp) {
      if (cp < 0x20 || cp == '"' || cp == '\\')
        alternatives.push_back(Lit(EscapeJsonString(std::string(1, static_cast<char>(cp)))));
    }
    std::vector<CodePointRange> pieces = {r};
    for (const CodePointRange& u : unsafe) {
      std::vector<CodePointRange> next;
      for (const CodePointRange& p : pieces) {
        if (p.hi < u.lo || p.lo > u.hi) {
          next.push_back(p);
          continue;
        }
        if (p.lo < u.lo) next.push_back({p.lo, u.lo - 1});
        if (p.hi > u.hi) next.push_back({u.hi + 1, p.hi});
      }
      pieces = std::move(next);
    }
    safe.insert(safe.end(), pieces.begin(), pieces.end());
  }
  if (!safe.empty()) alternatives.insert(alternatives.begin(), Expr::CharClass(std::move(safe)));
  if (alternatives.empty()) return Expr::Choice({});  // the class matched only surrogates
  return Alt(std::move(alternatives));
}

}  // namespace

absl::StatusOr<Expr> StringFormatExpr(std::string_view format) {
  if (format == "date") return DateExpr();
  if (format == "time") return TimeExpr();
  if (format == "date-time") {
    return Seq({DateExpr(), Expr::CharClass({{'T', 'T'}, {'t', 't'}}), TimeExpr()});
  }
  if (format == "uuid") {
    return Seq({Hex(8), Lit("-"), Hex(4), Lit("-"), Hex(4), Lit("-"), Hex(4), Lit("-"), Hex(12)});
  }
  if (format == "email") {
    // RFC 5321's dot-atom local part and a domain of at least two labels.
    const Expr atom = Rep(Expr::CharClass({{'!', '!'},
                                           {'#', '\''},
                                           {'*', '+'},
                                           {'-', '-'},
                                           {'/', '9'},
                                           {'=', '='},
                                           {'?', '?'},
                                           {'A', 'Z'},
                                           {'^', '~'}}),
                          1, kUnbounded);
    return Seq({atom, Rep(Seq({Lit("."), atom}), 0, kUnbounded), Lit("@"), HostLabel(),
                Rep(Seq({Lit("."), HostLabel()}), 1, kUnbounded)});
  }
  if (format == "ipv4") {
    const Expr octet =
        Alt({Seq({Lit("25"), Range('0', '5')}), Seq({Lit("2"), Range('0', '4'), Digits()}),
             Seq({Lit("1"), Digits(), Digits()}), Seq({Range('1', '9'), Digits()}), Digits()});
    return Seq({octet, Rep(Seq({Lit("."), octet}), 3, 3)});
  }
  if (format == "hostname") {
    return Seq({HostLabel(), Rep(Seq({Lit("."), HostLabel()}), 0, kUnbounded)});
  }
  return absl::InvalidArgumentError(
      absl::StrCat("format '", std::string(format),
                   "' is not supported (date, time, date-time, uuid, email, ipv4, hostname are)"));
}

std::string EscapeJsonString(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<uint8_t>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<uint8_t>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

// CharLengthBounds' sums and products saturate at kCap, which stands for "no limit".
constexpr int64_t kCap = int64_t{1} << 40;

std::pair<int64_t, int64_t> CharLengthBounds(const Expr& e) {
  const auto add = [](int64_t a, int64_t b) { return std::min(kCap, a + b); };
  const auto finish = [&](std::pair<int64_t, int64_t> b) {
    if (b.second >= kCap) b.second = kUnbounded;
    return b;
  };
  const auto raw = [&](const auto& self, const Expr& x) -> std::pair<int64_t, int64_t> {
    switch (x.kind) {
      case Expr::Kind::kEmpty:
        return {0, 0};
      case Expr::Kind::kLiteral: {
        int64_t n = 0;
        for (char c : x.text) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80 ? 1 : 0;
        return {n, n};
      }
      case Expr::Kind::kCharClass:
        return {1, 1};
      case Expr::Kind::kRuleRef:
        return {0, kCap};
      case Expr::Kind::kSequence: {
        std::pair<int64_t, int64_t> total = {0, 0};
        for (const Expr& item : x.items) {
          const auto b = self(self, item);
          total = {add(total.first, b.first), add(total.second, b.second)};
        }
        return total;
      }
      case Expr::Kind::kChoice: {
        if (x.items.empty()) return {0, 0};
        std::pair<int64_t, int64_t> range = {kCap, 0};
        for (const Expr& item : x.items) {
          const auto b = self(self, item);
          range = {std::min(range.first, b.first), std::max(range.second, b.second)};
        }
        return range;
      }
      case Expr::Kind::kRepeat: {
        const auto b = self(self, x.items[0]);
        const int64_t lo = std::min(kCap, b.first * x.min_count);
        const int64_t hi = b.second == 0               ? 0
                           : x.max_count == kUnbounded ? kCap
                                                       : std::min(kCap, b.second * x.max_count);
        return {lo, hi};
      }
    }
    return {0, kCap};
  };
  return finish(raw(raw, e));
}

Expr JsonStringContent(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kEmpty:
    case Expr::Kind::kRuleRef:
      return e;
    case Expr::Kind::kLiteral:
      return Lit(EscapeJsonString(e.text));
    case Expr::Kind::kCharClass:
      return ClassAsJsonContent(e);
    case Expr::Kind::kSequence:
    case Expr::Kind::kChoice: {
      std::vector<Expr> items;
      for (const Expr& item : e.items) items.push_back(JsonStringContent(item));
      return e.kind == Expr::Kind::kSequence ? Seq(std::move(items)) : Alt(std::move(items));
    }
    case Expr::Kind::kRepeat:
      return Rep(JsonStringContent(e.items[0]), e.min_count, e.max_count);
  }
  return e;
}

}  // namespace expertmesh::grammar
