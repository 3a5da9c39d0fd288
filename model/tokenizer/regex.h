// A compiled PCRE2 pattern (UTF + Unicode properties + JIT) used by the Split and ByteLevel
// pre-tokenizers and the Replace normalizer. Thread-safe: matching keeps its scratch state
// in thread-local storage.
#ifndef EXPERTMESH_MODEL_TOKENIZER_REGEX_H_
#define EXPERTMESH_MODEL_TOKENIZER_REGEX_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace expertmesh::tokenizer {

class Regex {
 public:
  // Compiles `pattern`. INVALID_ARGUMENT with PCRE2's message and offset when it does not compile.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  // Compiles a pattern that matches `literal` exactly.
  static absl::StatusOr<std::unique_ptr<Regex>> CompileLiteral(std::string_view literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of all non-overlapping matches in `subject`, left to
  // right. Empty matches are skipped. REQUIRES: `subject` is valid UTF-8 (not re-checked).
  // INTERNAL when PCRE2 fails at match time (for example the JIT stack limit).
  absl::Status FindAll(std::string_view subject,
                       std::vector<std::pair<size_t, size_t>>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code*; kept opaque so callers need not include pcre2.h
};

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_REGEX_H_
