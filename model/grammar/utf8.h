// UTF-8 encoding and decoding of single code points for the grammar front ends (the tokenizer's
// codec, model/tokenizer/utf8.h, in the front ends' calling style).
#ifndef EXPERTMESH_MODEL_GRAMMAR_UTF8_H_
#define EXPERTMESH_MODEL_GRAMMAR_UTF8_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace expertmesh::grammar {

// Appends the UTF-8 encoding of `cp` (<= kMaxCodePoint; surrogates are encoded as CESU would,
// callers never pass them for text).
void AppendUtf8(uint32_t cp, std::string& out);

// Decodes the code point starting at text[*pos] and advances *pos past it. Returns -1 (and
// advances by one byte) on an invalid or truncated sequence, overlong forms and surrogates.
int32_t DecodeUtf8(std::string_view text, size_t* pos);

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_UTF8_H_
