#include "common/internal_token.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace expertmesh {
namespace {

// Keeps this digest apart from every other use of DigestSecret (API keys, cache salts).
constexpr absl::string_view kLabel = "expertmesh internal token v1";

}  // namespace

absl::StatusOr<InternalToken> InternalToken::FromString(absl::string_view token) {
  if (token.empty()) return absl::InvalidArgumentError("the internal token is empty");
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "the internal token holds a space or a character that is not printable ASCII");
    }
  }
  InternalToken result;
  result.authorization_ = absl::StrCat("Bearer ", token);
  result.digest_ = DigestSecret(kLabel, token);
  return result;
}

absl::StatusOr<InternalToken> InternalToken::Load(const std::string& file,
                                                  const std::string& env_var) {
  if (!file.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("internal token file ", file, ": ", text.status().message()));
    }
    absl::StatusOr<InternalToken> token = FromString(absl::StripAsciiWhitespace(*text));
    if (!token.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("internal token file ", file, ": ", token.status().message()));
    }
    return token;
  }
  if (env_var.empty()) return InternalToken();
  const char* value = std::getenv(env_var.c_str());
  if (value == nullptr) return InternalToken();
  absl::StatusOr<InternalToken> token = FromString(absl::StripAsciiWhitespace(value));
  if (!token.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(env_var, ": ", token.status().message(), "; unset it to run without a token"));
  }
  return token;
}

absl::Status InternalToken::Check(absl::string_view authorization, absl::string_view what) const {
  if (!enabled()) return absl::OkStatus();
  const std::optional<absl::string_view> sent = BearerToken(authorization);
  if (!sent.has_value() || sent->empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat(what, ": missing internal token (authorization: Bearer <token>)"));
  }
  if (!SecretDigestsEqual(digest_, DigestSecret(kLabel, *sent))) {
    return absl::UnauthenticatedError(absl::StrCat(what, ": wrong internal token"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GenerateInternalToken() {
  char bytes[32];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom failed (errno ", errno, ")"));
    }
    filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

}  // namespace expertmesh
