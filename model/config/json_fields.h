// Typed, non-throwing access to the fields of a JSON object, with errors that name the file and
// the field ("config.json: field 'hidden_size': expected an integer, got string"). Shared by the
// config parsers of model/.
#ifndef EXPERTMESH_MODEL_CONFIG_JSON_FIELDS_H_
#define EXPERTMESH_MODEL_CONFIG_JSON_FIELDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace expertmesh::model {

// absl here is built without std::string_view aliasing (absl::string_view is its own type), so
// StrCat needs std::string_view arguments converted.
inline absl::string_view AsAbsl(std::string_view s) { return {s.data(), s.size()}; }

class JsonFields {
 public:
  // `object` must outlive this reader. `source` prefixes errors; `path` ("" at the top level,
  // "rope_scaling." inside a nested object) prefixes field names.
  JsonFields(const nlohmann::json& object, std::string_view source, std::string path = "")
      : object_(object), source_(source), path_(std::move(path)) {}

  // True when the key exists and is not null.
  bool Has(std::string_view key) const;

  // Required fields: INVALID_ARGUMENT when missing, null or of the wrong type.
  absl::StatusOr<int64_t> Int(std::string_view key) const;
  absl::StatusOr<double> Number(std::string_view key) const;
  absl::StatusOr<std::string> String(std::string_view key) const;

  // Optional fields: nullopt when missing or null; INVALID_ARGUMENT on a wrong type.
  absl::StatusOr<std::optional<int64_t>> OptionalInt(std::string_view key) const;
  absl::StatusOr<std::optional<double>> OptionalNumber(std::string_view key) const;
  absl::StatusOr<std::optional<bool>> OptionalBool(std::string_view key) const;
  absl::StatusOr<std::optional<std::string>> OptionalString(std::string_view key) const;
  // An int or a list of ints ([] when missing or null).
  absl::StatusOr<std::vector<int64_t>> IntOrIntList(std::string_view key) const;
  // A list of strings ([] when missing or null).
  absl::StatusOr<std::vector<std::string>> StringList(std::string_view key) const;
  // A nested object: nullptr when missing or null; INVALID_ARGUMENT when not an object.
  absl::StatusOr<const nlohmann::json*> OptionalObject(std::string_view key) const;

  // INVALID_ARGUMENT "<source>: field '<path><key>': <message>".
  absl::Status Error(std::string_view key, std::string_view message) const;

  std::string_view source() const { return source_; }
  const std::string& path() const { return path_; }

 private:
  const nlohmann::json* Find(std::string_view key) const;
  absl::Status TypeError(std::string_view key, std::string_view expected,
                         const nlohmann::json& value) const;

  const nlohmann::json& object_;
  std::string_view source_;
  std::string path_;
};

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_CONFIG_JSON_FIELDS_H_
