// Optional API keys for both public APIs. Keys come from a file (one per line, '#' comments)
// and/or an environment variable (comma-separated), never from a flag (flags show in `ps`).
// With no keys configured every request is allowed.
//
// Each key also names a tenant: TenantSalt() derives the prefix-cache salt that keeps one
// tenant's cached prompt blocks (and so usage.cached_tokens) out of another's reach.
//
// Thread safety: immutable after construction (set_shared_prefix_cache before serving).
#ifndef EXPERTMESH_ROUTER_API_KEYS_H_
#define EXPERTMESH_ROUTER_API_KEYS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secret_digest.h"

namespace expertmesh::router {

class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(const std::vector<std::string>& keys);

  // Reads `file` (if not empty) and the variable `env_var` (if set). INVALID_ARGUMENT naming
  // the file when it cannot be read or holds no key, and naming the variable when it is set
  // but holds no key (a blank value must not silently turn authentication off).
  static absl::StatusOr<ApiKeys> Load(const std::string& file, const std::string& env_var);

  bool enabled() const { return !digests_.empty(); }
  // Checks an "Authorization" header value ("Bearer <key>"; the scheme is case-insensitive,
  // RFC 9110 section 11.1). OK when keys are disabled; UNAUTHENTICATED with a clear message
  // otherwise. The comparison takes the same time whatever the key's length and content.
  absl::Status Check(absl::string_view authorization) const;

  // The prefix-cache salt of the tenant that sent `authorization` (32 bytes, a SHA-256 of
  // the key under a fixed label, so the salt does not reveal the key), for
  // PreparedRequest::cache_salt. Empty, meaning the one shared cache, when keys are disabled
  // or the shared cache was chosen. Call after Check() succeeded.
  std::string TenantSalt(absl::string_view authorization) const;

  // Opt-in: every tenant shares one prefix cache (faster for a shared system prompt; tenants
  // can then learn from cached_tokens whether others sent a prompt). Off by default.
  void set_shared_prefix_cache(bool shared) { shared_prefix_cache_ = shared; }
  bool shared_prefix_cache() const { return shared_prefix_cache_; }

 private:
  std::vector<SecretDigest> digests_;  // SHA-256 of each key; the keys themselves are not kept
  bool shared_prefix_cache_ = false;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_API_KEYS_H_
