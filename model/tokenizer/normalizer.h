// tokenizer.json "normalizer": rewrites text before pre-tokenization. Supported types:
// NFC, NFD, NFKC, NFKD (utf8proc), Sequence, Prepend, Replace (String or Regex pattern).
#ifndef EXPERTMESH_MODEL_TOKENIZER_NORMALIZER_H_
#define EXPERTMESH_MODEL_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` in place. REQUIRES: valid UTF-8. INTERNAL if the Unicode library fails.
  virtual absl::Status Normalize(std::string* text) const = 0;
};

// Builds the normalizer described by `spec`; nullptr for JSON null (no normalization).
// INVALID_ARGUMENT naming the problem for an unknown type or malformed fields.
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& spec);

// True when `text` is ASCII.
bool IsAscii(std::string_view text);

// True when NFC(text) == text is certain without running the normalization: every code point is
// inert (a starter with no decomposition that takes part in no composition). False means
// "unknown". REQUIRES: valid UTF-8.
bool NfcUnchanged(std::string_view text);

class Regex;
// Compiles a tokenizer.json pattern object: {"Regex": "..."} or {"String": "literal"}.
// INVALID_ARGUMENT prefixed with `where` when malformed or when the regex does not compile.
absl::StatusOr<std::unique_ptr<Regex>> PatternFromJson(const nlohmann::json& pattern,
                                                       std::string_view where);

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_NORMALIZER_H_
