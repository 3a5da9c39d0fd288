// UTF-8 helpers shared by the encoder (input validation) and the decoders (lossy output that
// matches Rust's String::from_utf8_lossy, which is what HF `tokenizers` returns).
#ifndef EXPERTMESH_MODEL_TOKENIZER_UTF8_H_
#define EXPERTMESH_MODEL_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace expertmesh::tokenizer {

// absl::string_view is not std::string_view in this abseil build; StrCat and hash-map lookups
// need the absl type.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

// The UTF-8 encoding of U+FFFD REPLACEMENT CHARACTER.
inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// Length of the longest prefix of `bytes` (starting at a sequence start) that is a valid but
// possibly incomplete UTF-8 sequence: returns {consumed, complete}. consumed == 0 means the first
// byte can never start a valid sequence. Implements the "maximal subpart" rule of Unicode
// (the rule Rust's from_utf8_lossy follows), so each invalid subpart becomes one U+FFFD.
struct Utf8Step {
  size_t length;  // bytes that belong to the (partial) sequence; 0: first byte invalid
  bool complete;  // true when `length` bytes form a whole, valid scalar value
};
Utf8Step NextUtf8Sequence(std::string_view bytes);

// Byte offset of the first invalid UTF-8 byte, or npos when `text` is valid UTF-8.
size_t FindInvalidUtf8(std::string_view text);

// Appends `bytes` to `out`, replacing every maximal invalid subpart with U+FFFD, exactly as
// Rust's String::from_utf8_lossy does.
void AppendUtf8Lossy(std::string_view bytes, std::string* out);

// Number of bytes of the UTF-8 sequence starting with lead byte `b` (1 for invalid leads).
inline size_t Utf8SequenceLength(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes the scalar value at `text[pos]` (REQUIRES: valid UTF-8 there) and its length.
char32_t DecodeUtf8At(std::string_view text, size_t pos, size_t* length);

// Appends the UTF-8 encoding of scalar value `c`.
void AppendUtf8(char32_t c, std::string* out);

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_UTF8_H_
