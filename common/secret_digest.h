// Comparing secrets (API keys, the internal group token) without leaking them through timing:
// each side is hashed with SHA-256 under a label, and the fixed-size digests are compared in
// constant time. Neither the length of a guess nor how much of it matched shows in the time a
// check takes, and the secret itself need not be kept once its digest is.
#ifndef EXPERTMESH_COMMON_SECRET_DIGEST_H_
#define EXPERTMESH_COMMON_SECRET_DIGEST_H_

#include <array>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace expertmesh {

using SecretDigest = std::array<uint8_t, 32>;

// SHA-256 of `label`, a NUL, then `secret` (so (label, secret) pairs cannot run into each
// other). Different labels give unrelated digests of one secret. Aborts only if OpenSSL cannot
// hash at all (out of memory): an all-zero digest would accept anything.
SecretDigest DigestSecret(absl::string_view label, absl::string_view secret);

// Constant-time equality of two digests.
bool SecretDigestsEqual(const SecretDigest& a, const SecretDigest& b);

// The credential in an "Authorization: Bearer <credential>" value (scheme matched
// case-insensitively, RFC 9110 section 11.1; surrounding whitespace removed), or nullopt when
// the value has another form.
std::optional<absl::string_view> BearerToken(absl::string_view authorization);

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_SECRET_DIGEST_H_
