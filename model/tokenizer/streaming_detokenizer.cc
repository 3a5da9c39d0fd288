#include "model/tokenizer/streaming_detokenizer.h"

#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {

std::string StreamingDetokenizer::Add(int32_t id) {
  if (skip_special_tokens_ && tokenizer_.IsSpecial(id)) return {};
  pending_.append(tokenizer_.TokenBytes(id));
  // Emit everything up to the last sequence start whose bytes so far are a valid prefix of a
  // character that is not yet complete; from_utf8_lossy would decide the same way later.
  std::string out;
  size_t pos = 0;
  const std::string_view bytes = pending_;
  while (pos < bytes.size()) {
    const Utf8Step step = NextUtf8Sequence(bytes.substr(pos));
    if (step.complete) {
      out.append(bytes.substr(pos, step.length));
      pos += step.length;
    } else if (step.length > 0 && pos + step.length == bytes.size()) {
      break;  // a valid but unfinished sequence at the end: wait for more bytes
    } else {
      out.append(kReplacementChar);
      pos += step.length == 0 ? 1 : step.length;
    }
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamingDetokenizer::Finish() {
  std::string out;
  AppendUtf8Lossy(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace expertmesh::tokenizer
