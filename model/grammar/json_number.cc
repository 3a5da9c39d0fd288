#include "model/grammar/json_number.h"

#include <algorithm>
#include <tuple>
#include <utility>
#include <vector>

#include "model/grammar/expr_util.h"

namespace expertmesh::grammar {
namespace {

Expr Digits() { return Range('0', '9'); }
Expr AnyDigits() { return Rep(Digits(), 0, kUnbounded); }

// Digits first..last: a literal when it is one digit (reads better, joins neighbouring literals).
Expr DigitRange(int first, int last) {
  if (first == last) return Lit(std::string(1, static_cast<char>('0' + first)));
  return Range('0' + first, '0' + last);
}

// "" or `nonempty`; x* rather than ("" | x+).
Expr EmptyOr(std::optional<Expr> nonempty) {
  if (!nonempty) return Expr::Empty();
  if (nonempty->kind == Expr::Kind::kRepeat && nonempty->min_count == 1) {
    return Rep(nonempty->items[0], 0, nonempty->max_count);
  }
  return Opt(*std::move(nonempty));
}

// Decimal strings of equal length from a to b (a <= b, leading zeros allowed).
Expr SameLengthRange(std::string_view a, std::string_view b) {
  const size_t n = a.size();
  if (n == 0) return Expr::Empty();
  if (a == b) return Lit(std::string(a));
  if (n == 1) return Range(a[0], b[0]);
  if (a[0] == b[0]) {
    return Seq({Lit(std::string(1, a[0])), SameLengthRange(a.substr(1), b.substr(1))});
  }
  const std::string_view a_rest = a.substr(1);
  const std::string_view b_rest = b.substr(1);
  const bool a_rest_min = a_rest.find_first_not_of('0') == std::string_view::npos;
  const bool b_rest_max = b_rest.find_first_not_of('9') == std::string_view::npos;
  // First digits whose rest may be anything; the first and last digit otherwise get their own
  // alternative with the rest bounded from below (above).
  const char free_lo = a_rest_min ? a[0] : static_cast<char>(a[0] + 1);
  const char free_hi = b_rest_max ? b[0] : static_cast<char>(b[0] - 1);
  std::vector<Expr> alternatives;
  if (!a_rest_min) {
    alternatives.push_back(
        Seq({Lit(std::string(1, a[0])), SameLengthRange(a_rest, std::string(n - 1, '9'))}));
  }
  if (free_lo <= free_hi) {
    const int32_t rest = static_cast<int32_t>(n - 1);
    alternatives.push_back(Seq({Range(free_lo, free_hi), Rep(Digits(), rest, rest)}));
  }
  if (!b_rest_max) {
    alternatives.push_back(
        Seq({Lit(std::string(1, b[0])), SameLengthRange(std::string(n - 1, '0'), b_rest)}));
  }
  return Alt(std::move(alternatives));
}

// Compares digit strings without leading zeros as numbers.
int CompareIntegers(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  return a < b ? -1 : (a == b ? 0 : 1);
}

std::string Increment(std::string s) {
  int i = static_cast<int>(s.size()) - 1;
  while (i >= 0 && s[i] == '9') s[i--] = '0';
  if (i < 0) return "1" + s;
  ++s[i];
  return s;
}

// REQUIRES: s != "0".
std::string Decrement(std::string s) {
  int i = static_cast<int>(s.size()) - 1;
  while (s[i] == '0') s[i--] = '9';
  --s[i];
  const size_t first = s.find_first_not_of('0');
  return first == std::string::npos ? "0" : s.substr(first);
}

// Non-negative JSON integers (no leading zeros) from lo to hi (digit strings without leading
// zeros; hi absent: unbounded). REQUIRES: lo <= hi.
Expr NonNegativeRange(const std::string& lo, const std::optional<std::string>& hi) {
  const size_t hi_digits = hi ? hi->size() : lo.size();
  std::vector<Expr> alternatives;
  for (size_t d = lo.size(); d <= hi_digits; ++d) {
    const std::string from = d == lo.size() ? lo : "1" + std::string(d - 1, '0');
    const std::string to = hi && d == hi_digits ? *hi : std::string(d, '9');
    alternatives.push_back(SameLengthRange(from, to));
  }
  if (!hi) {
    // Every longer number.
    alternatives.push_back(
        Seq({Range('1', '9'), Rep(Digits(), static_cast<int32_t>(lo.size()), kUnbounded)}));
  }
  return Alt(std::move(alternatives));
}

std::string MagnitudeText(int64_t v) {
  const uint64_t m = v < 0 ? static_cast<uint64_t>(-(v + 1)) + 1 : static_cast<uint64_t>(v);
  return std::to_string(m);
}

// One side of the comparison of fraction digits d (the digits after the point, "" for none)
// with a bound's fraction digits, read with implicit trailing zeros. `done`: the side is already
// decided (an earlier digit differed in the right direction).
struct FractionSide {
  bool done = false;
  std::string digits;  // the bound's remaining digits
  bool exclusive = false;
};

// The fraction digit strings d (the digits after the point, "" for none) with 0.d above `lower`
// and below `upper`: whether "" is one, and an expression for the others (nullopt: none).
struct FractionLanguage {
  bool empty_ok = false;
  std::optional<Expr> nonempty;
};

// Every step consumes one digit of a bound or reaches a closed form, so the recursion ends.
FractionLanguage Fraction(FractionSide lower, FractionSide upper) {
  // An inclusive lower bound that is used up no longer constrains anything.
  if (!lower.done && lower.digits.empty() && !lower.exclusive) lower.done = true;
  const bool lower_nonzero = !lower.done && lower.digits.empty();  // needs a non-zero digit
  const bool upper_zeros = !upper.done && upper.digits.empty();    // only zeros (or nothing)
  if (upper_zeros && upper.exclusive) return {};                   // below 0: nothing
  if (lower.done && upper.done) return {true, Rep(Digits(), 1, kUnbounded)};
  if (lower_nonzero && upper.done) return {false, Seq({AnyDigits(), Range('1', '9'), AnyDigits()})};
  if (lower.done && upper_zeros) return {true, Rep(Lit("0"), 1, kUnbounded)};
  if (lower_nonzero && upper_zeros) return {};
  FractionLanguage language;
  // "" is 0: above a lower bound only when it is used up (done or inclusive, handled above), and
  // below an upper bound unless that is an exclusive 0 (handled above).
  language.empty_ok = lower.done;
  // The state after one digit, as (dead, lower, upper).
  const auto step = [&](int digit) {
    FractionSide l = lower;
    FractionSide u = upper;
    bool dead = false;
    if (!l.done) {
      const int a = l.digits.empty() ? 0 : l.digits[0] - '0';
      l.done = digit > a;
      dead = digit < a;
      if (!l.digits.empty()) l.digits.erase(0, 1);
    }
    if (!u.done) {
      const int b = u.digits.empty() ? 0 : u.digits[0] - '0';
      u.done = digit < b;
      dead = dead || digit > b;
      if (!u.digits.empty()) u.digits.erase(0, 1);
    }
    if (l.done) l.digits.clear();
    if (u.done) u.digits.clear();
    return std::make_tuple(dead, l.done, l.digits, u.done, u.digits);
  };
  std::vector<Expr> alternatives;
  for (int first = 0; first <= 9;) {
    const auto state = step(first);
    int last = first;
    while (last < 9 && step(last + 1) == state) ++last;
    if (!std::get<0>(state)) {
      const FractionLanguage rest =
          Fraction(FractionSide{std::get<1>(state), std::get<2>(state), lower.exclusive},
                   FractionSide{std::get<3>(state), std::get<4>(state), upper.exclusive});
      if (rest.empty_ok) {
        alternatives.push_back(Seq({DigitRange(first, last), EmptyOr(rest.nonempty)}));
      } else if (rest.nonempty) {
        alternatives.push_back(Seq({DigitRange(first, last), *rest.nonempty}));
      }
    }
    first = last + 1;
  }
  if (!alternatives.empty()) language.nonempty = Alt(std::move(alternatives));
  return language;
}

// The part after the integer digits: nothing, or "." and the digits; Choice{} when neither.
Expr FractionPart(FractionSide lower, FractionSide upper) {
  const FractionLanguage language = Fraction(std::move(lower), std::move(upper));
  if (!language.nonempty) return language.empty_ok ? Expr::Empty() : Expr::Choice({});
  Expr point = Seq({Lit("."), *language.nonempty});
  return language.empty_ok ? Opt(std::move(point)) : point;
}

// Magnitudes (no sign, no exponent) from `a` to `b` (b absent: unbounded); nullopt when empty.
std::optional<Expr> MagnitudeRange(const Decimal& a, bool a_open, const std::optional<Decimal>& b,
                                   bool b_open) {
  if (b) {
    const int order = CompareDecimals(a, *b);
    if (order > 0 || (order == 0 && (a_open || b_open))) return std::nullopt;
  }
  const FractionSide free{true, "", false};
  const FractionSide lower{false, a.fraction, a_open};
  std::vector<Expr> alternatives;
  if (b && b->integer == a.integer) {
    alternatives.push_back(
        Seq({Lit(a.integer), FractionPart(lower, FractionSide{false, b->fraction, b_open})}));
  } else {
    alternatives.push_back(Seq({Lit(a.integer), FractionPart(lower, free)}));
    const std::string above = Increment(a.integer);
    if (!b) {
      alternatives.push_back(
          Seq({NonNegativeRange(above, std::nullopt), FractionPart(free, free)}));
    } else {
      if (CompareIntegers(above, b->integer) < 0) {
        alternatives.push_back(
            Seq({NonNegativeRange(above, Decrement(b->integer)), FractionPart(free, free)}));
      }
      alternatives.push_back(
          Seq({Lit(b->integer), FractionPart(free, FractionSide{false, b->fraction, b_open})}));
    }
  }
  // An alternative whose fraction part matches nothing matches nothing.
  std::vector<Expr> live;
  for (Expr& alternative : alternatives) {
    const bool dead = alternative.kind == Expr::Kind::kSequence &&
                      alternative.items.back().kind == Expr::Kind::kChoice &&
                      alternative.items.back().items.empty();
    if (!dead) live.push_back(std::move(alternative));
  }
  if (live.empty()) return std::nullopt;
  return Alt(std::move(live));
}

bool IsZero(const Decimal& d) { return d.integer == "0" && d.fraction.empty(); }

}  // namespace

Expr IntegerRangeExpr(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  std::vector<Expr> alternatives;
  if (!hi || *hi >= 0) {
    const std::string from = lo && *lo > 0 ? std::to_string(*lo) : "0";
    alternatives.push_back(NonNegativeRange(
        from, hi ? std::optional<std::string>(std::to_string(*hi)) : std::nullopt));
  }
  if (!lo || *lo < 0) {
    // Negative values: magnitudes from max(1, -hi) to -lo.
    const std::string from = hi && *hi < 0 ? MagnitudeText(*hi) : "1";
    alternatives.push_back(
        Seq({Lit("-"), NonNegativeRange(from, lo ? std::optional<std::string>(MagnitudeText(*lo))
                                                 : std::nullopt)}));
  }
  return Alt(std::move(alternatives));
}

std::optional<Decimal> ParseDecimal(std::string_view text) {
  Decimal d;
  size_t pos = 0;
  if (pos < text.size() && text[pos] == '-') {
    d.negative = true;
    ++pos;
  }
  std::string digits;  // mantissa digits, the point after `point` of them
  size_t point = 0;
  bool seen_point = false;
  for (; pos < text.size() && ((text[pos] >= '0' && text[pos] <= '9') || text[pos] == '.'); ++pos) {
    if (text[pos] == '.') {
      if (seen_point) return std::nullopt;
      seen_point = true;
      continue;
    }
    digits.push_back(text[pos]);
    if (!seen_point) ++point;
  }
  if (digits.empty()) return std::nullopt;
  int64_t exponent = 0;
  if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
    ++pos;
    bool negative_exponent = false;
    if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
      negative_exponent = text[pos++] == '-';
    }
    if (pos == text.size()) return std::nullopt;
    for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos) {
      exponent = exponent * 10 + (text[pos] - '0');
      if (exponent > 400) return std::nullopt;
    }
    if (negative_exponent) exponent = -exponent;
  }
  if (pos != text.size()) return std::nullopt;
  // Move the point by the exponent, padding with zeros on either side.
  int64_t new_point = static_cast<int64_t>(point) + exponent;
  if (new_point < 0) {
    digits.insert(0, static_cast<size_t>(-new_point), '0');
    new_point = 0;
  }
  if (new_point > static_cast<int64_t>(digits.size()))
    digits.append(new_point - digits.size(), '0');
  std::string integer = digits.substr(0, new_point);
  std::string fraction = digits.substr(new_point);
  const size_t first = integer.find_first_not_of('0');
  d.integer = first == std::string::npos ? "0" : integer.substr(first);
  const size_t last = fraction.find_last_not_of('0');
  d.fraction = last == std::string::npos ? "" : fraction.substr(0, last + 1);
  if (IsZero(d)) d.negative = false;
  return d;
}

int CompareDecimals(const Decimal& a, const Decimal& b) {
  if (a.negative != b.negative) return a.negative ? -1 : 1;
  int magnitude = CompareIntegers(a.integer, b.integer);
  if (magnitude == 0) {
    const size_t n = std::max(a.fraction.size(), b.fraction.size());
    const std::string fa = a.fraction + std::string(n - a.fraction.size(), '0');
    const std::string fb = b.fraction + std::string(n - b.fraction.size(), '0');
    magnitude = fa < fb ? -1 : (fa == fb ? 0 : 1);
  }
  return a.negative ? -magnitude : magnitude;
}

std::optional<Expr> NumberRangeExpr(const std::optional<NumberBound>& lo,
                                    const std::optional<NumberBound>& hi) {
  const Decimal zero;
  std::vector<Expr> alternatives;
  // Values >= 0 (0 itself only here, so "-0" is never produced).
  const bool hi_allows_zero_or_more =
      !hi || (!hi->value.negative && !(IsZero(hi->value) && hi->exclusive));
  if (hi_allows_zero_or_more) {
    const bool lo_nonnegative = lo && !lo->value.negative;
    std::optional<Expr> m =
        MagnitudeRange(lo_nonnegative ? lo->value : zero, lo_nonnegative && lo->exclusive,
                       hi ? std::optional<Decimal>(hi->value) : std::nullopt, hi && hi->exclusive);
    if (m) alternatives.push_back(*std::move(m));
  }
  // Values < 0: magnitudes in (max(0, -hi), -lo], from above 0 when hi >= 0.
  if (!lo || lo->value.negative) {
    const bool hi_negative = hi && hi->value.negative;
    Decimal from = hi_negative ? hi->value : zero;
    from.negative = false;
    std::optional<Decimal> to;
    if (lo) {
      to = lo->value;
      to->negative = false;
    }
    std::optional<Expr> m =
        MagnitudeRange(from, hi_negative ? hi->exclusive : true, to, lo && lo->exclusive);
    if (m) alternatives.push_back(Seq({Lit("-"), *std::move(m)}));
  }
  if (alternatives.empty()) return std::nullopt;
  return Alt(std::move(alternatives));
}

}  // namespace expertmesh::grammar
