#include "model/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/regex.h"
#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {
namespace {

using nlohmann::json;

// Code points that NFC leaves alone whatever surrounds them: starters with no decomposition that
// take part in no canonical composition. Derived from utf8proc's own tables; Hangul jamo are
// excluded by hand because utf8proc composes them algorithmically (LV + T -> LVT).
const std::vector<bool>& NfcInertTable() {
  static const std::vector<bool>* table = [] {
    auto* t = new std::vector<bool>(0x110000, false);
    for (utf8proc_int32_t c = 0; c < 0x110000; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      if ((c >= 0x1100 && c <= 0x11FF) || (c >= 0xA960 && c <= 0xA97F) ||
          (c >= 0xD7B0 && c <= 0xD7FF)) {
        continue;
      }
      const utf8proc_property_t* p = utf8proc_get_property(c);
      (*t)[c] = p->combining_class == 0 && p->decomp_seqindex == UINT16_MAX &&
                p->comb_index == UINT16_MAX;
    }
    return t;
  }();
  return *table;
}

class UnicodeNormalizer : public Normalizer {
 public:
  UnicodeNormalizer(int options, std::string name)
      : options_(options), name_(std::move(name)), nfc_(name_ == "NFC") {
    if (nfc_) NfcInertTable();  // build it at load time, not on the first request
  }
  absl::Status Normalize(std::string* text) const override {
    // Every normal form leaves ASCII unchanged, and NFC leaves text of inert code points
    // unchanged; skipping the library call there roughly halves Qwen2's encode time.
    if (nfc_ ? NfcUnchanged(*text) : IsAscii(*text)) return absl::OkStatus();
    if (!nfc_) return Map(*text, text);
    // NFC works on stretches between characters that never interact with what precedes them
    // (ASCII and inert code points), so only the stretches around other characters are mapped.
    const std::vector<bool>& inert = NfcInertTable();
    const std::string_view in = *text;
    std::string out;
    out.reserve(in.size());
    size_t copied = 0, last_boundary = 0, pos = 0;
    auto boundary_at = [&](size_t at, size_t* len) {
      if (static_cast<unsigned char>(in[at]) < 0x80) {
        *len = 1;
        return true;
      }
      const char32_t c = DecodeUtf8At(in, at, len);
      return c < inert.size() && inert[c];
    };
    while (pos < in.size()) {
      size_t len = 0;
      if (boundary_at(pos, &len)) {
        last_boundary = pos;
        pos += len;
        continue;
      }
      size_t end = pos + len;
      while (end < in.size() && !boundary_at(end, &len)) end += len;
      out.append(in.substr(copied, last_boundary - copied));
      std::string region(in.substr(last_boundary, end - last_boundary));
      RETURN_IF_ERROR(Map(region, &region));
      out.append(region);
      copied = pos = end;
    }
    out.append(in.substr(copied));
    *text = std::move(out);
    return absl::OkStatus();
  }

 private:
  // Runs utf8proc over `in` and stores the result in `out` (which may alias `in`).
  absl::Status Map(const std::string& in, std::string* out) const {
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                                            static_cast<utf8proc_ssize_t>(in.size()), &mapped,
                                            static_cast<utf8proc_option_t>(options_));
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat(name_, " normalization failed: ", utf8proc_errmsg(n)));
    }
    out->assign(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
    std::free(mapped);
    return absl::OkStatus();
  }

  int options_;
  std::string name_;
  bool nfc_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status Normalize(std::string* text) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->Normalize(text));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> regex, std::string content)
      : regex_(std::move(regex)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    RETURN_IF_ERROR(regex_->FindAll(*text, &matches));
    if (matches.empty()) return absl::OkStatus();
    std::string out;
    size_t prev = 0;
    for (const auto& [begin, end] : matches) {
      out.append(*text, prev, begin - prev);
      out.append(content_);
      prev = end;
    }
    out.append(*text, prev);
    *text = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

}  // namespace

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool NfcUnchanged(std::string_view text) {
  const std::vector<bool>& inert = NfcInertTable();
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t len = 0;
    const char32_t c = DecodeUtf8At(text, pos, &len);
    if (c >= inert.size() || !inert[c]) return false;
    pos += len;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<Regex>> PatternFromJson(const json& pattern,
                                                       std::string_view where) {
  absl::StatusOr<std::unique_ptr<Regex>> regex;
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
    regex = Regex::Compile(pattern["Regex"].get<std::string>());
  } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
    regex = Regex::CompileLiteral(pattern["String"].get<std::string>());
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(where), ": \"pattern\" must be {\"Regex\": str} or {\"String\": str}"));
  }
  if (!regex.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(where), ": ", regex.status().message()));
  }
  return regex;
}

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const json& spec) {
  if (spec.is_null()) return std::unique_ptr<Normalizer>();
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string()) {
    return absl::InvalidArgumentError("normalizer: expected an object with a string \"type\"");
  }
  const std::string type = spec["type"].get<std::string>();
  if (type == "NFC")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE, type);
  if (type == "NFD")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, type);
  if (type == "NFKC") {
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                                               type);
  }
  if (type == "NFKD") {
    return std::make_unique<UnicodeNormalizer>(
        UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, type);
  }
  if (type == "Sequence") {
    if (!spec.contains("normalizers") || !spec["normalizers"].is_array()) {
      return absl::InvalidArgumentError("normalizer Sequence: \"normalizers\" must be an array");
    }
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const json& item : spec["normalizers"]) {
      ASSIGN_OR_RETURN(std::unique_ptr<Normalizer> step, NormalizerFromJson(item));
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "Prepend") {
    if (!spec.contains("prepend") || !spec["prepend"].is_string()) {
      return absl::InvalidArgumentError("normalizer Prepend: \"prepend\" must be a string");
    }
    return std::make_unique<PrependNormalizer>(spec["prepend"].get<std::string>());
  }
  if (type == "Replace") {
    if (!spec.contains("content") || !spec["content"].is_string() || !spec.contains("pattern")) {
      return absl::InvalidArgumentError(
          "normalizer Replace: needs \"pattern\" and a string \"content\"");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                     PatternFromJson(spec["pattern"], "normalizer Replace"));
    return std::make_unique<ReplaceNormalizer>(std::move(regex),
                                               spec["content"].get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("normalizer type \"", type,
                   "\" is not supported (NFC, NFD, NFKC, NFKD, Sequence, Prepend, Replace)"));
}

}  // namespace expertmesh::tokenizer
