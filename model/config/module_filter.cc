#include "model/config/module_filter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace expertmesh::model {

namespace {

// `regex` compiled to match anchored at the start of a name; the error quotes `entry`, the
// pattern as the config spells it.
absl::StatusOr<pcre2_code*> CompileAnchored(absl::string_view regex, absl::string_view entry) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(),
                                   PCRE2_ANCHORED, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(
        absl::StrCat("module pattern '", entry,
                     "' is not a regular expression: ", reinterpret_cast<const char*>(message)));
  }
  return code;
}

}  // namespace

struct ModuleFilter::Pattern {
  ~Pattern() { pcre2_code_free(code); }
  std::string literal;         // for the suffix rule
  pcre2_code* code = nullptr;  // "(?:<pattern>)<boundary>", matched anchored at the start
};

absl::StatusOr<ModuleFilter> ModuleFilter::Create(const std::vector<std::string>& patterns) {
  ModuleFilter filter;
  for (const std::string& text : patterns) {
    // transformers: re.match(rf"(?:{key}){boundary}", name) with this boundary: the match ends
    // right after a '.', or right before one, or at the end of the name.
    const std::string regex = absl::StrCat("(?:", text, ")(?:(?<=\\.)|(?=\\.|$))");
    absl::StatusOr<pcre2_code*> code = CompileAnchored(regex, text);
    if (!code.ok()) return code.status();
    auto pattern = std::make_shared<Pattern>();
    pattern->literal = text;
    pattern->code = *code;
    filter.patterns_.push_back(std::move(pattern));
  }
  return filter;
}

bool ModuleFilter::Excludes(std::string_view module_name) const {
  for (const auto& pattern : patterns_) {
    if (module_name.ends_with(pattern->literal)) return true;
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(pattern->code, nullptr);
    const int rc = pcre2_match(pattern->code, reinterpret_cast<PCRE2_SPTR>(module_name.data()),
                               module_name.size(), 0, 0, data, nullptr);
    pcre2_match_data_free(data);
    if (rc >= 0) return true;
  }
  return false;
}

struct CompressedTensorsMatcher::Regex {
  ~Regex() { pcre2_code_free(code); }
  pcre2_code* code = nullptr;  // matched anchored at the start only, as re.match
};

absl::StatusOr<CompressedTensorsMatcher> CompressedTensorsMatcher::Create(
    const std::vector<std::string>& entries) {
  CompressedTensorsMatcher matcher;
  for (const std::string& entry : entries) {
    if (!entry.starts_with("re:")) {
      matcher.names_.push_back(entry);
      continue;
    }
    absl::StatusOr<pcre2_code*> code = CompileAnchored(absl::string_view(entry).substr(3), entry);
    if (!code.ok()) return code.status();
    auto compiled = std::make_shared<Regex>();
    compiled->code = *code;
    matcher.regexes_.push_back(std::move(compiled));
  }
  return matcher;
}

bool CompressedTensorsMatcher::Matches(std::string_view module_name, bool is_linear) const {
  for (const std::string& name : names_) {
    if (name == module_name || (is_linear && name == "Linear")) return true;
  }
  for (const auto& regex : regexes_) {
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(regex->code, nullptr);
    const int rc = pcre2_match(regex->code, reinterpret_cast<PCRE2_SPTR>(module_name.data()),
                               module_name.size(), 0, 0, data, nullptr);
    pcre2_match_data_free(data);
    if (rc >= 0) return true;
  }
  return false;
}

}  // namespace expertmesh::model
