// The shared credential of the back rooms: every router and every rank of the worker groups
// behind it hold the same token; the Worker API and the rendezvous store refuse a call that
// does not carry it (as "authorization: Bearer <token>" gRPC metadata).
//
// The token comes from a file (--internal-token-file) or the EXPERTMESH_INTERNAL_TOKEN
// variable, never from a flag (flags show in `ps`), and is never logged. No token configured
// means no check, as before the token existed (local tests); the worker warns about it.
//
// Thread safety: immutable after construction.
#ifndef EXPERTMESH_COMMON_INTERNAL_TOKEN_H_
#define EXPERTMESH_COMMON_INTERNAL_TOKEN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secret_digest.h"

namespace expertmesh {

inline constexpr char kInternalTokenEnv[] = "EXPERTMESH_INTERNAL_TOKEN";

class InternalToken {
 public:
  // No token: Check() accepts everything, authorization() is empty.
  InternalToken() = default;

  // INVALID_ARGUMENT when `token` is empty or holds anything but printable ASCII without
  // spaces (it travels as a gRPC metadata value). The message never shows the token.
  static absl::StatusOr<InternalToken> FromString(absl::string_view token);

  // The token of `file` (surrounding whitespace removed) when `file` is not empty, else of the
  // variable `env_var` when it is set, else none. INVALID_ARGUMENT naming the file or the
  // variable when it holds no usable token: a blank value must not silently turn the check
  // off.
  static absl::StatusOr<InternalToken> Load(const std::string& file, const std::string& env_var);

  bool enabled() const { return !authorization_.empty(); }

  // "Bearer <token>": the value of the `authorization` metadata a client sends. Empty when
  // disabled.
  const std::string& authorization() const { return authorization_; }

  // OK when disabled or when `authorization` is "Bearer <the token>"; UNAUTHENTICATED
  // otherwise, naming `what` (the service), never the token. Takes the same time whatever was
  // sent.
  absl::Status Check(absl::string_view authorization, absl::string_view what) const;

 private:
  std::string authorization_;
  SecretDigest digest_{};
};

// 32 random bytes from getrandom(2), hex-encoded (64 characters): a fresh token for a group
// started by one process (`expertmesh serve`). INTERNAL when the kernel gives no randomness.
absl::StatusOr<std::string> GenerateInternalToken();

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_INTERNAL_TOKEN_H_
