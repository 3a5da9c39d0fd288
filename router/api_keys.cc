#include "router/api_keys.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/secret_digest.h"

namespace expertmesh::router {
namespace {

// Labels keep the digest used for comparison and the cache salt apart: knowing a tenant's
// salt (workers see it) tells nothing about the digest, let alone the key.
constexpr absl::string_view kCompareLabel = "expertmesh api key v1";
constexpr absl::string_view kSaltLabel = "expertmesh prefix-cache salt v1";

}  // namespace

ApiKeys::ApiKeys(const std::vector<std::string>& keys) {
  digests_.reserve(keys.size());
  for (const std::string& k : keys) digests_.push_back(DigestSecret(kCompareLabel, k));
}

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
      size_t from_env = 0;
      for (absl::string_view k : absl::StrSplit(value, ',')) {
        k = absl::StripAsciiWhitespace(k);
        if (k.empty()) continue;
        keys.emplace_back(k);
        ++from_env;
      }
      if (from_env == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(env_var, " is set but holds no key; unset it to run without API keys"));
      }
    }
  }
  return ApiKeys(keys);
}

absl::Status ApiKeys::Check(absl::string_view authorization) const {
  if (digests_.empty()) return absl::OkStatus();
  const std::optional<absl::string_view> key = BearerToken(authorization);
  if (!key.has_value() || key->empty()) {
    return absl::UnauthenticatedError("missing API key: send it as 'Authorization: Bearer <key>'");
  }
  // Digests have one length, so neither the length of the key sent nor how much of it matched
  // shows in the time taken; every configured key is compared.
  const SecretDigest sent = DigestSecret(kCompareLabel, *key);
  int matches = 0;
  for (const SecretDigest& d : digests_) matches |= SecretDigestsEqual(d, sent) ? 1 : 0;
  if (matches == 0) return absl::UnauthenticatedError("incorrect API key provided");
  return absl::OkStatus();
}

std::string ApiKeys::TenantSalt(absl::string_view authorization) const {
  if (digests_.empty() || shared_prefix_cache_) return "";
  const std::optional<absl::string_view> key = BearerToken(authorization);
  if (!key.has_value()) return "";
  const SecretDigest salt = DigestSecret(kSaltLabel, *key);
  return std::string(reinterpret_cast<const char*>(salt.data()), salt.size());
}

}  // namespace expertmesh::router
