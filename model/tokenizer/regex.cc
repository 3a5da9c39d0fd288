#include "model/tokenizer/regex.h"

#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {
namespace {

// Per-thread match state: a match-data block (only the whole-match pair is read) and a JIT stack
// large enough for long whitespace or letter runs.
struct ThreadMatchState {
  ThreadMatchState() {
    match_data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(match_data);
  }
  pcre2_match_data* match_data;
  pcre2_match_context* context;
  pcre2_jit_stack* jit_stack;
};

ThreadMatchState& GetThreadMatchState() {
  thread_local ThreadMatchState state;
  return state;
}

std::string Pcre2ErrorMessage(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return std::string(reinterpret_cast<const char*>(buffer));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("regex \"", AbslView(pattern),
                                                   "\" does not compile at offset ", error_offset,
                                                   ": ", Pcre2ErrorMessage(error_code)));
  }
  // JIT is an optimisation: when it is unavailable the interpreter gives the same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = std::string(pattern);
  regex->code_ = code;
  return regex;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::CompileLiteral(std::string_view literal) {
  // \Q...\E quotes everything except a literal "\E", which is spliced in outside the quotes.
  std::string pattern = "\\Q";
  size_t pos = 0;
  while (true) {
    const size_t e = literal.find("\\E", pos);
    if (e == std::string_view::npos) {
      pattern.append(literal.substr(pos));
      break;
    }
    pattern.append(literal.substr(pos, e - pos));
    pattern.append("\\E\\\\E\\Q");
    pos = e + 2;
  }
  pattern.append("\\E");
  return Compile(pattern);
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

absl::Status Regex::FindAll(std::string_view subject,
                            std::vector<std::pair<size_t, size_t>>* matches) const {
  ThreadMatchState& state = GetThreadMatchState();
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* data = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t offset = 0;
  while (offset <= subject.size()) {
    const int rc = pcre2_match(code, data, subject.size(), offset, PCRE2_NO_UTF_CHECK,
                               state.match_data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return absl::InternalError(
          absl::StrCat("regex \"", pattern_, "\" failed while matching: ", Pcre2ErrorMessage(rc)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end > begin) {
      matches->emplace_back(begin, end);
      offset = end;
    } else {
      // Empty match: step over one whole character so the next search starts on a boundary.
      if (begin >= subject.size()) break;
      offset = begin + Utf8SequenceLength(static_cast<unsigned char>(subject[begin]));
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::tokenizer
