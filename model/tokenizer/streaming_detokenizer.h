// Incremental detokenization for streaming responses: feed token ids one at a time and get the
// text they complete. Never emits part of a UTF-8 sequence; the concatenation of every
// Add() result and Finish() equals Tokenizer::Decode(all ids, skip_special_tokens).
#ifndef EXPERTMESH_MODEL_TOKENIZER_STREAMING_DETOKENIZER_H_
#define EXPERTMESH_MODEL_TOKENIZER_STREAMING_DETOKENIZER_H_

#include <cstdint>
#include <string>

#include "model/tokenizer/tokenizer.h"

namespace expertmesh::tokenizer {

// Not thread-safe: one instance per stream. REQUIRES: `tokenizer` outlives it.
class StreamingDetokenizer {
 public:
  StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Returns the text newly completed by `id` (possibly empty). Bytes that may still become a
  // valid character are held back; bytes that can no longer do so become U+FFFD.
  std::string Add(int32_t id);

  // Ends the stream: returns the held-back tail (one U+FFFD for an incomplete sequence), and
  // resets for reuse.
  std::string Finish();

  // Bytes currently held back (at most 3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_STREAMING_DETOKENIZER_H_
