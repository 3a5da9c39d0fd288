#include "model/grammar/engine/utf8_ranges.h"

#include <algorithm>
#include <string>

#include "model/tokenizer/utf8.h"

namespace expertmesh::grammar::engine_internal {
namespace {

constexpr uint32_t kSurrogateLo = 0xD800;
constexpr uint32_t kSurrogateHi = 0xDFFF;

// Splits [lo, hi] until both ends have the same encoded length and every continuation byte
// below the first differing one spans its full range; then the range is one sequence.
void Split(uint32_t lo, uint32_t hi, std::vector<Utf8Sequence>* out) {
  if (lo > hi) return;
  for (uint32_t edge : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= edge && hi > edge) {
      Split(lo, edge, out);
      Split(edge + 1, hi, out);
      return;
    }
  }
  const int n = Utf8Length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (uint32_t{1} << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        Split(lo, lo | m, out);
        Split((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        Split(lo, (hi & ~m) - 1, out);
        Split(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a;
  std::string b;
  tokenizer::AppendUtf8(static_cast<char32_t>(lo), &a);
  tokenizer::AppendUtf8(static_cast<char32_t>(hi), &b);
  Utf8Sequence seq;
  for (int i = 0; i < n; ++i) {
    seq.push_back({static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i])});
  }
  out->push_back(std::move(seq));
}

}  // namespace

std::vector<CodePointRange> NormalizeClass(const std::vector<CodePointRange>& ranges,
                                           bool negated) {
  std::vector<CodePointRange> sorted;
  for (const CodePointRange& r : ranges) {
    if (r.lo > r.hi || r.lo > kMaxCodePoint) continue;
    sorted.push_back({r.lo, std::min(r.hi, kMaxCodePoint)});
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const CodePointRange& x, const CodePointRange& y) { return x.lo < y.lo; });
  std::vector<CodePointRange> merged;
  for (const CodePointRange& r : sorted) {
    if (!merged.empty() && r.lo <= merged.back().hi + 1) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  if (negated) {
    std::vector<CodePointRange> complement;
    uint32_t next = 0;
    for (const CodePointRange& r : merged) {
      if (r.lo > next) complement.push_back({next, r.lo - 1});
      next = r.hi + 1;
    }
    if (next <= kMaxCodePoint) complement.push_back({next, kMaxCodePoint});
    merged = std::move(complement);
  }
  // Surrogates are not code points UTF-8 can encode.
  std::vector<CodePointRange> out;
  for (const CodePointRange& r : merged) {
    if (r.hi < kSurrogateLo || r.lo > kSurrogateHi) {
      out.push_back(r);
      continue;
    }
    if (r.lo < kSurrogateLo) out.push_back({r.lo, kSurrogateLo - 1});
    if (r.hi > kSurrogateHi) out.push_back({kSurrogateHi + 1, r.hi});
  }
  return out;
}

std::vector<Utf8Sequence> Utf8Sequences(const std::vector<CodePointRange>& ranges) {
  std::vector<Utf8Sequence> out;
  for (const CodePointRange& r : ranges) Split(r.lo, r.hi, &out);
  return out;
}

}  // namespace expertmesh::grammar::engine_internal
