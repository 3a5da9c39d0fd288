#include "tools/make_model/pretokenizer.h"

#include "absl/strings/str_cat.h"
#include "tools/make_model/utf8_check.h"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

namespace expertmesh::make_model {

const char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

absl::StatusOr<PreTokenizer> PreTokenizer::Create(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(
        absl::StrCat("pre-tokenizer regex does not compile at offset ", offset, ": ",
                     reinterpret_cast<const char*>(message)));
  }
  auto compiled = std::make_shared<Compiled>();
  compiled->code = code;
  compiled->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return PreTokenizer(std::string(pattern), std::move(compiled));
}

absl::StatusOr<std::vector<std::string_view>> PreTokenizer::Split(std::string_view text) const {
  if (const size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("pre-tokenizer: text is not valid UTF-8 at byte ", bad));
  }
  std::vector<std::string_view> pieces;
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(compiled_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  size_t last_end = 0;
  // Validity was checked above (the JIT matcher would not check it at all).
  const uint32_t options = PCRE2_NO_UTF_CHECK;
  while (start <= text.size()) {
    const int rc =
        compiled_->jit
            ? pcre2_jit_match(compiled_->code, subject, text.size(), start, options, match, nullptr)
            : pcre2_match(compiled_->code, subject, text.size(), start, options, match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(match);
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return absl::InvalidArgumentError(absl::StrCat("pre-tokenizer: cannot split text at byte ",
                                                     start, ": ",
                                                     reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (begin > last_end) pieces.push_back(text.substr(last_end, begin - last_end));
    if (end > begin) {
      pieces.push_back(text.substr(begin, end - begin));
      start = end;
    } else {
      // An empty match: step over one UTF-8 character so the loop always advances.
      start = end + 1;
      while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80) {
        ++start;
      }
      if (start > text.size()) break;
      continue;
    }
    last_end = end;
  }
  if (last_end < text.size()) pieces.push_back(text.substr(last_end));
  pcre2_match_data_free(match);
  return pieces;
}

}  // namespace expertmesh::make_model
