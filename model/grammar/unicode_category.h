// Unicode general categories as code point ranges (from utf8proc's tables), for the regex
// escapes \p{...} and \P{...}.
#ifndef EXPERTMESH_MODEL_GRAMMAR_UNICODE_CATEGORY_H_
#define EXPERTMESH_MODEL_GRAMMAR_UNICODE_CATEGORY_H_

#include <optional>
#include <string_view>
#include <vector>

#include "model/grammar/ast.h"

namespace expertmesh::grammar {

// The sorted, merged ranges of a general category given by its abbreviation: one letter for a
// major class (L, M, N, P, S, Z, C), two for a category (Lu, Nd, Zs, ...), or LC / L& (cased
// letters). nullopt for any other name (scripts such as Greek are not known). Thread-safe; the
// tables are built once, on first use.
std::optional<std::vector<CodePointRange>> UnicodeCategoryRanges(std::string_view name);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_UNICODE_CATEGORY_H_
