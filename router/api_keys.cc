#include "router/api_keys.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"

namespace expertmesh::router {
namespace {

// Compares without an early exit, so timing does not reveal how much of a key matched.
bool ConstantTimeEqual(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::Load(const std::string& file, const std::string& env_var) {
  std::vector<std::string> keys;
  if (!file.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("API key file ", file, ": ", text.status().message()));
    }
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty() && line[0] != '#') keys.emplace_back(line);
    }
    if (keys.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("API key file ", file, " holds no key"));
    }
  }
  if (!env_var.empty()) {
    if (const char* value = std::getenv(env_var.c_str())) {
      for (absl::string_view k : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        keys.emplace_back(absl::StripAsciiWhitespace(k));
      }
    }
  }
  return ApiKeys(std::move(keys));
}

absl::Status ApiKeys::Check(const std::string& authorization) const {
  if (keys_.empty()) return absl::OkStatus();
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(authorization, kBearer)) {
    return absl::UnauthenticatedError("missing API key: send it as 'Authorization: Bearer <key>'");
  }
  const std::string key(
      absl::StripAsciiWhitespace(absl::string_view(authorization).substr(kBearer.size())));
  bool ok = false;
  for (const std::string& k : keys_) ok |= ConstantTimeEqual(k, key);
  if (!ok) return absl::UnauthenticatedError("incorrect API key provided");
  return absl::OkStatus();
}

}  // namespace expertmesh::router
