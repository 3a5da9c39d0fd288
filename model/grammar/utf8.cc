#include "model/grammar/utf8.h"

#include "model/tokenizer/utf8.h"

namespace expertmesh::grammar {

// The codec is the tokenizer's; these adapt it to the front ends' calling style (code points as
// integers, -1 for an invalid sequence).
void AppendUtf8(uint32_t cp, std::string& out) {
  tokenizer::AppendUtf8(static_cast<char32_t>(cp), &out);
}

int32_t DecodeUtf8(std::string_view text, size_t* pos) {
  const tokenizer::Utf8Step step = tokenizer::NextUtf8Sequence(text.substr(*pos));
  if (!step.complete) {
    ++*pos;
    return -1;
  }
  size_t length = 0;
  const char32_t cp = tokenizer::DecodeUtf8At(text, *pos, &length);
  *pos += length;
  return static_cast<int32_t>(cp);
}

}  // namespace expertmesh::grammar
