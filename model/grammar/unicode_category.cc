#include "model/grammar/unicode_category.h"

#include <algorithm>
#include <array>
#include <string>

#include "utf8proc.h"

namespace expertmesh::grammar {
namespace {

constexpr int kCategories = 30;  // UTF8PROC_CATEGORY_CN .. UTF8PROC_CATEGORY_CO

// Ranges per utf8proc category, built by walking every code point once (~1.1M lookups).
const std::array<std::vector<CodePointRange>, kCategories>& Table() {
  static const auto* table = [] {
    auto* t = new std::array<std::vector<CodePointRange>, kCategories>();
    for (uint32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
      const int c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
      if (c < 0 || c >= kCategories) continue;
      std::vector<CodePointRange>& ranges = (*t)[c];
      if (!ranges.empty() && ranges.back().hi + 1 == cp) {
        ranges.back().hi = cp;
      } else {
        ranges.push_back({cp, cp});
      }
    }
    return t;
  }();
  return *table;
}

}  // namespace

std::optional<std::vector<CodePointRange>> UnicodeCategoryRanges(std::string_view name) {
  static constexpr const char* kNames[kCategories] = {
      "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
      "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
  std::vector<int> selected;
  for (int c = 0; c < kCategories; ++c) {
    const std::string_view category = kNames[c];
    const bool cased_letter = (name == "LC" || name == "L&") &&
                              (category == "Lu" || category == "Ll" || category == "Lt");
    if (category == name || (name.size() == 1 && category[0] == name[0]) || cased_letter) {
      selected.push_back(c);
    }
  }
  if (selected.empty()) return std::nullopt;
  std::vector<CodePointRange> ranges;
  for (int c : selected) {
    if (c == UTF8PROC_CATEGORY_CS) continue;  // surrogates are never text
    ranges.insert(ranges.end(), Table()[c].begin(), Table()[c].end());
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const CodePointRange& a, const CodePointRange& b) { return a.lo < b.lo; });
  std::vector<CodePointRange> merged;
  for (const CodePointRange& r : ranges) {
    if (!merged.empty() && merged.back().hi + 1 >= r.lo) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

}  // namespace expertmesh::grammar
