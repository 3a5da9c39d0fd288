// Small file helpers that report errors as absl::Status with the path in the message.
#ifndef EXPERTMESH_COMMON_FILE_UTIL_H_
#define EXPERTMESH_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace expertmesh {

// Reads a whole file. NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically (temporary file + rename).
absl::Status WriteStringToFile(const std::string& path, const std::string& contents);

// Reads and parses a JSON file. INVALID_ARGUMENT naming the file, line and column when the
// text is not JSON.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_FILE_UTIL_H_
