// Optional API keys for both public APIs. Keys come from a file (one per line, '#' comments)
// and/or an environment variable (comma-separated), never from a flag (flags show in `ps`).
// With no keys configured every request is allowed.
#ifndef EXPERTMESH_ROUTER_API_KEYS_H_
#define EXPERTMESH_ROUTER_API_KEYS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::router {

class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(std::vector<std::string> keys) : keys_(std::move(keys)) {}

  // Reads `file` (if not empty) and the variable `env_var` (if set). INVALID_ARGUMENT naming
  // the file when it cannot be read or holds no key.
  static absl::StatusOr<ApiKeys> Load(const std::string& file, const std::string& env_var);

  bool enabled() const { return !keys_.empty(); }
  // Checks an "Authorization" header value ("Bearer <key>"). OK when keys are disabled;
  // UNAUTHENTICATED with a clear message otherwise.
  absl::Status Check(const std::string& authorization) const;

 private:
  std::vector<std::string> keys_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_API_KEYS_H_
