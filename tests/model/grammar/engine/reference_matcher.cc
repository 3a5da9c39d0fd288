#include "tests/model/grammar/engine/reference_matcher.h"

#include <algorithm>

namespace expertmesh::grammar::testing {
namespace {

int64_t Add(int64_t a, int64_t b) { return std::min(a + b, kNoCompletion); }

// Code points a UTF-8 sequence of `len` bytes encodes (the canonical ones only).
void LengthInterval(int len, uint32_t* lo, uint32_t* hi) {
  static constexpr uint32_t kLo[] = {0, 0, 0x80, 0x800, 0x10000};
  static constexpr uint32_t kHi[] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
  *lo = kLo[len];
  *hi = kHi[len];
}

}  // namespace

ReferenceMatcher::ReferenceMatcher(const Grammar& g) : g_(g) {
  for (const Rule& r : g.rules) {
    rules_[r.name] = &r.body;
    rule_min_[r.name] = kNoCompletion;
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (const Rule& r : g.rules) {
      const int64_t m = MinLen(r.body);
      if (m < rule_min_[r.name]) {
        rule_min_[r.name] = m;
        changed = true;
      }
    }
  }
  Expr root = Expr::Ref(g.root);
  root_ = std::make_shared<const Expr>(std::move(root));
  state_ = Normalize(State{Config{Item{root_.get()}}});
}

bool ReferenceMatcher::ClassHasIn(const Expr& e, uint32_t lo, uint32_t hi) const {
  hi = std::min(hi, kMaxCodePoint);
  std::vector<std::pair<uint32_t, uint32_t>> parts;
  if (lo < 0xD800) parts.push_back({lo, std::min(hi, 0xD7FFu)});
  if (hi > 0xDFFF) parts.push_back({std::max(lo, 0xE000u), hi});
  for (auto [a, b] : parts) {
    if (a > b) continue;
    if (!e.negated) {
      for (const CodePointRange& r : e.ranges) {
        if (r.lo <= r.hi && std::max(r.lo, a) <= std::min(r.hi, b)) return true;
      }
      continue;
    }
    std::vector<CodePointRange> sorted = e.ranges;
    std::sort(sorted.begin(), sorted.end(),
              [](const CodePointRange& x, const CodePointRange& y) { return x.lo < y.lo; });
    uint64_t cur = a;
    for (const CodePointRange& r : sorted) {
      if (r.lo > r.hi) continue;
      if (r.lo > cur) break;
      cur = std::max<uint64_t>(cur, uint64_t{r.hi} + 1);
    }
    if (cur <= b) return true;
  }
  return false;
}

int64_t ReferenceMatcher::MinLen(const Expr& e) const {
  switch (e.kind) {
    case Expr::Kind::kEmpty:
      return 0;
    case Expr::Kind::kLiteral:
      return static_cast<int64_t>(e.text.size());
    case Expr::Kind::kCharClass:
      for (int len = 1; len <= 4; ++len) {
        uint32_t lo, hi;
        LengthInterval(len, &lo, &hi);
        if (ClassHasIn(e, lo, hi)) return len;
      }
      return kNoCompletion;
    case Expr::Kind::kRuleRef:
      return rule_min_.at(e.rule);
    case Expr::Kind::kSequence: {
      int64_t s = 0;
      for (const Expr& item : e.items) s = Add(s, MinLen(item));
      return s;
    }
    case Expr::Kind::kChoice: {
      int64_t m = kNoCompletion;
      for (const Expr& item : e.items) m = std::min(m, MinLen(item));
      return m;
    }
    case Expr::Kind::kRepeat: {
      if (e.min_count == 0) return 0;
      const int64_t item = MinLen(e.items[0]);
      return item >= kNoCompletion ? kNoCompletion : std::min(item * e.min_count, kNoCompletion);
    }
  }
  return kNoCompletion;
}

int64_t ReferenceMatcher::ItemMin(const Item& it) const {
  const Expr& e = *it.e;
  if (e.kind == Expr::Kind::kLiteral) return static_cast<int64_t>(e.text.size()) - it.count;
  if (e.kind == Expr::Kind::kCharClass && it.need > 0) return it.need - it.count;
  if (e.kind == Expr::Kind::kRepeat) {
    const int64_t left = std::max<int64_t>(0, e.min_count - it.count);
    if (left == 0) return 0;
    const int64_t item = MinLen(e.items[0]);
    return item >= kNoCompletion ? kNoCompletion : std::min(item * left, kNoCompletion);
  }
  return MinLen(e);
}

int64_t ReferenceMatcher::ConfigMin(const Config& c) const {
  int64_t s = 0;
  for (const Item& it : c) s = Add(s, ItemMin(it));
  return s;
}

ReferenceMatcher::State ReferenceMatcher::Normalize(const State& s) const {
  State out;
  std::set<Config> seen;
  std::vector<Config> work(s.begin(), s.end());
  while (!work.empty()) {
    if (seen.size() > kMaxConfigs) {
      exploded_ = true;
      return {};
    }
    Config c = std::move(work.back());
    work.pop_back();
    if (!seen.insert(c).second) continue;
    if (ConfigMin(c) >= kNoCompletion) continue;
    if (c.empty()) {
      out.insert(c);
      continue;
    }
    const Item top = c.back();
    const Expr& e = *top.e;
    c.pop_back();
    switch (e.kind) {
      case Expr::Kind::kEmpty:
        work.push_back(c);
        break;
      case Expr::Kind::kLiteral:
        if (top.count >= static_cast<int32_t>(e.text.size())) {
          work.push_back(c);
        } else {
          c.push_back(top);
          out.insert(c);
        }
        break;
      case Expr::Kind::kCharClass:
        c.push_back(top);
        out.insert(c);
        break;
      case Expr::Kind::kRuleRef:
        c.push_back(Item{rules_.at(e.rule)});
        work.push_back(c);
        break;
      case Expr::Kind::kSequence:
        for (size_t i = e.items.size(); i-- > 0;) c.push_back(Item{&e.items[i]});
        work.push_back(c);
        break;
      case Expr::Kind::kChoice:
        for (const Expr& item : e.items) {
          Config alt = c;
          alt.push_back(Item{&item});
          work.push_back(alt);
        }
        break;
      case Expr::Kind::kRepeat: {
        if (top.count < e.min_count) {
          Config more = c;
          more.push_back(Item{&e, top.count + 1});
          more.push_back(Item{&e.items[0]});
          work.push_back(more);
          break;
        }
        work.push_back(c);  // done repeating
        if (e.max_count == kUnbounded || top.count < e.max_count) {
          Config more = c;
          // Past the minimum an unbounded repeat's count no longer matters: keep it fixed so
          // the set of configurations stays finite.
          more.push_back(Item{&e, e.max_count == kUnbounded ? top.count : top.count + 1});
          more.push_back(Item{&e.items[0]});
          work.push_back(more);
        }
        break;
      }
    }
  }
  return out;
}

ReferenceMatcher::State ReferenceMatcher::Step(const State& s, uint8_t b) const {
  State next;
  if (exploded_) return next;
  for (const Config& c : s) {
    if (c.empty()) continue;
    Config n = c;
    Item& top = n.back();
    const Expr& e = *top.e;
    if (e.kind == Expr::Kind::kLiteral) {
      if (static_cast<uint8_t>(e.text[top.count]) != b) continue;
      ++top.count;
      if (top.count == static_cast<int32_t>(e.text.size())) n.pop_back();
      next.insert(n);
      continue;
    }
    // A character class, read one UTF-8 byte at a time.
    if (top.need == 0) {
      if (b < 0x80) {
        top.need = 1, top.cp = b;
      } else if ((b & 0xE0) == 0xC0) {
        top.need = 2, top.cp = b & 0x1F;
      } else if ((b & 0xF0) == 0xE0) {
        top.need = 3, top.cp = b & 0x0F;
      } else if ((b & 0xF8) == 0xF0) {
        top.need = 4, top.cp = b & 0x07;
      } else {
        continue;
      }
    } else {
      if ((b & 0xC0) != 0x80) continue;
      top.cp = (top.cp << 6) | (b & 0x3F);
    }
    ++top.count;
    const int left = top.need - top.count;
    uint32_t len_lo, len_hi;
    LengthInterval(top.need, &len_lo, &len_hi);
    const uint32_t lo = top.cp << (6 * left);
    const uint32_t hi = lo | ((uint32_t{1} << (6 * left)) - 1);
    if (std::max(lo, len_lo) > std::min(hi, len_hi)) continue;
    if (!ClassHasIn(e, std::max(lo, len_lo), std::min(hi, len_hi))) continue;
    if (left == 0) n.pop_back();
    next.insert(n);
  }
  return Normalize(next);
}

bool ReferenceMatcher::CanAdvance(std::string_view bytes) const {
  State s = state_;
  for (char c : bytes) {
    s = Step(s, static_cast<uint8_t>(c));
    if (s.empty()) return false;
  }
  return true;
}

bool ReferenceMatcher::Advance(std::string_view bytes) {
  State s = state_;
  for (char c : bytes) {
    s = Step(s, static_cast<uint8_t>(c));
    if (s.empty()) return false;
  }
  state_ = std::move(s);
  return true;
}

bool ReferenceMatcher::CanEnd() const {
  for (const Config& c : state_) {
    if (c.empty()) return true;
  }
  return false;
}

int64_t ReferenceMatcher::MinBytes() const {
  int64_t m = kNoCompletion;
  for (const Config& c : state_) m = std::min(m, ConfigMin(c));
  return m;
}

int64_t ReferenceMatcher::MinBytesAfter(std::string_view bytes) const {
  ReferenceMatcher copy = *this;
  if (!copy.Advance(bytes)) return kNoCompletion;
  return copy.MinBytes();
}

std::vector<int64_t> ReferenceMatcher::MinBytesAfterEach(
    const std::vector<std::string_view>& sorted) const {
  std::vector<int64_t> out(sorted.size(), kNoCompletion);
  std::vector<State> states{state_};  // states[d]: after the first d bytes of `prev`
  std::string_view prev;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const std::string_view s = sorted[i];
    size_t lcp = 0;
    while (lcp < s.size() && lcp < prev.size() && s[lcp] == prev[lcp]) ++lcp;
    states.resize(std::min(states.size(), lcp + 1));
    prev = s;
    while (states.size() <= s.size() && !states.back().empty()) {
      states.push_back(Step(states.back(), static_cast<uint8_t>(s[states.size() - 1])));
    }
    if (states.size() == s.size() + 1 && !states.back().empty()) {
      int64_t m = kNoCompletion;
      for (const Config& c : states.back()) m = std::min(m, ConfigMin(c));
      out[i] = m;
    }
  }
  return out;
}

size_t ReferenceMatcher::MaxDepth() const {
  size_t m = 0;
  for (const Config& c : state_) m = std::max(m, c.size());
  return m;
}

}  // namespace expertmesh::grammar::testing
