// Code-point ranges as UTF-8 byte-range sequences, the form a byte automaton matches them in
// (RE2's and Rust regex's utf8-ranges construction).
#ifndef EXPERTMESH_MODEL_GRAMMAR_ENGINE_UTF8_RANGES_H_
#define EXPERTMESH_MODEL_GRAMMAR_ENGINE_UTF8_RANGES_H_

#include <cstdint>
#include <vector>

#include "model/grammar/ast.h"

namespace expertmesh::grammar::engine_internal {

struct ByteRange {
  uint8_t lo = 0;
  uint8_t hi = 0;
  bool operator==(const ByteRange&) const = default;
};

// One byte-range per encoded byte: a code point matches the sequence when each of its UTF-8
// bytes falls in the corresponding range.
using Utf8Sequence = std::vector<ByteRange>;

// Bytes of the UTF-8 encoding of `cp`.
inline int Utf8Length(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

// The code points a class matches: `ranges` (or their complement when `negated`), clipped to
// kMaxCodePoint, surrogates removed; sorted and disjoint. Ranges with lo > hi are ignored.
std::vector<CodePointRange> NormalizeClass(const std::vector<CodePointRange>& ranges, bool negated);

// Disjoint byte-range sequences that together match exactly the code points of `ranges`
// (normalized as NormalizeClass returns them).
std::vector<Utf8Sequence> Utf8Sequences(const std::vector<CodePointRange>& ranges);

}  // namespace expertmesh::grammar::engine_internal

#endif  // EXPERTMESH_MODEL_GRAMMAR_ENGINE_UTF8_RANGES_H_
