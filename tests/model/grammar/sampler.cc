#include "tests/model/grammar/sampler.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "model/grammar/utf8.h"

namespace expertmesh::grammar::testing {
namespace {

constexpr int64_t kInfinite = std::numeric_limits<int64_t>::max() / 4;

int64_t Add(int64_t a, int64_t b) { return std::min(kInfinite, a + b); }

bool InClass(const Expr& cls, uint32_t cp) {
  const bool in = std::any_of(cls.ranges.begin(), cls.ranges.end(),
                              [&](const CodePointRange& r) { return cp >= r.lo && cp <= r.hi; });
  return in != cls.negated;
}

}  // namespace

GrammarSampler::GrammarSampler(const Grammar& g, uint64_t seed) : root_(g.root), rng_(seed) {
  for (const Rule& rule : g.rules) {
    rules_[rule.name] = &rule.body;
    min_bytes_[rule.name] = kInfinite;
  }
  // Bellman-Ford style: lower the rules' minimum sizes until nothing changes.
  for (bool changed = true; changed;) {
    changed = false;
    for (const Rule& rule : g.rules) {
      const int64_t m = MinBytes(rule.body);
      if (m < min_bytes_[rule.name]) {
        min_bytes_[rule.name] = m;
        changed = true;
      }
    }
  }
}

int64_t GrammarSampler::MinBytes(const Expr& e) const {
  switch (e.kind) {
    case Expr::Kind::kEmpty:
      return 0;
    case Expr::Kind::kLiteral:
      return static_cast<int64_t>(e.text.size());
    case Expr::Kind::kCharClass: {
      for (uint32_t cp = 0; cp <= 0x7F; ++cp) {
        if (InClass(e, cp)) return 1;
      }
      if (e.negated) return 2;  // all of ASCII excluded: a longer code point is left (enough here)
      uint32_t smallest = kMaxCodePoint + 1;
      for (const CodePointRange& r : e.ranges) smallest = std::min(smallest, r.lo);
      if (smallest > kMaxCodePoint) return kInfinite;
      return smallest < 0x800 ? 2 : (smallest < 0x10000 ? 3 : 4);
    }
    case Expr::Kind::kRuleRef: {
      const auto it = min_bytes_.find(e.rule);
      return it == min_bytes_.end() ? kInfinite : it->second;
    }
    case Expr::Kind::kSequence: {
      int64_t total = 0;
      for (const Expr& item : e.items) total = Add(total, MinBytes(item));
      return total;
    }
    case Expr::Kind::kChoice: {
      int64_t best = kInfinite;
      for (const Expr& item : e.items) best = std::min(best, MinBytes(item));
      return best;
    }
    case Expr::Kind::kRepeat: {
      const int64_t item = MinBytes(e.items[0]);
      return e.min_count == 0 ? 0 : (item >= kInfinite ? kInfinite : item * e.min_count);
    }
  }
  return kInfinite;
}

uint32_t GrammarSampler::RandomCodePoint(const Expr& cls) {
  // Try points from the class's own ranges and from a pool of interesting ones.
  static const uint32_t kPool[] = {'a',  'Z',  '0',  '9',    ' ',     '"', '\\', '/', '\n', '\t',
                                   0x01, 0x7F, 0xE9, 0x4E2D, 0x1F600, '-', '.',  '{', '}'};
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint32_t cp;
    if (!cls.negated && !cls.ranges.empty() && Uniform(0, 3) != 0) {
      const CodePointRange& r = cls.ranges[Uniform(0, cls.ranges.size() - 1)];
      cp = static_cast<uint32_t>(Uniform(r.lo, r.hi));
    } else {
      cp = kPool[Uniform(0, std::size(kPool) - 1)];
    }
    if ((cp < 0xD800 || cp > 0xDFFF) && InClass(cls, cp)) return cp;
  }
  for (uint32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
    if ((cp < 0xD800 || cp > 0xDFFF) && InClass(cls, cp)) return cp;
  }
  return 0xFFFD;
}

void GrammarSampler::Append(const Expr& e, int depth, std::string& out) {
  const bool shallow = depth < max_depth_;
  switch (e.kind) {
    case Expr::Kind::kEmpty:
      return;
    case Expr::Kind::kLiteral:
      out += e.text;
      return;
    case Expr::Kind::kCharClass:
      AppendUtf8(RandomCodePoint(e), out);
      return;
    case Expr::Kind::kRuleRef:
      Append(*rules_.at(e.rule), depth + 1, out);
      return;
    case Expr::Kind::kSequence:
      for (const Expr& item : e.items) Append(item, depth, out);
      return;
    case Expr::Kind::kChoice: {
      std::vector<const Expr*> options;
      for (const Expr& item : e.items) {
        if (MinBytes(item) < kInfinite) options.push_back(&item);
      }
      if (!shallow) {
        const auto shortest = std::min_element(
            options.begin(), options.end(),
            [&](const Expr* a, const Expr* b) { return MinBytes(*a) < MinBytes(*b); });
        Append(**shortest, depth, out);
        return;
      }
      Append(*options[Uniform(0, options.size() - 1)], depth, out);
      return;
    }
    case Expr::Kind::kRepeat: {
      int64_t count = e.min_count;
      if (shallow) {
        const int64_t hi = e.max_count == kUnbounded
                               ? e.min_count + 3
                               : std::min<int64_t>(e.max_count, e.min_count + 3);
        count = Uniform(e.min_count, hi);
      }
      for (int64_t i = 0; i < count; ++i) Append(e.items[0], depth, out);
      return;
    }
  }
}

std::string GrammarSampler::Sample(int max_depth) {
  max_depth_ = max_depth;
  std::string out;
  Append(*rules_.at(root_), 0, out);
  return out;
}

}  // namespace expertmesh::grammar::testing
