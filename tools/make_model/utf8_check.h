// Strict UTF-8 validation (no overlong forms, surrogates or code points above U+10FFFF), as
// PCRE2 and Hugging Face tokenizers require. PCRE2's JIT matcher does not validate its subject,
// so text is checked here before it reaches the regex.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_UTF8_CHECK_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_UTF8_CHECK_H_

#include <cstddef>
#include <string_view>

namespace expertmesh::make_model {

// The offset of the first byte that does not start a valid UTF-8 sequence, or npos.
size_t FindInvalidUtf8(std::string_view text);

inline bool IsValidUtf8(std::string_view text) {
  return FindInvalidUtf8(text) == std::string_view::npos;
}

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_UTF8_CHECK_H_
