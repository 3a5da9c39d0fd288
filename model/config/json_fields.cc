#include "model/config/json_fields.h"

#include "absl/strings/str_cat.h"

namespace expertmesh::model {

const nlohmann::json* JsonFields::Find(std::string_view key) const {
  if (!object_.is_object()) return nullptr;
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonFields::Has(std::string_view key) const { return Find(key) != nullptr; }

absl::Status JsonFields::Error(std::string_view key, std::string_view message) const {
  return absl::InvalidArgumentError(
      absl::StrCat(AsAbsl(source_), ": field '", path_, AsAbsl(key), "': ", AsAbsl(message)));
}

absl::Status JsonFields::TypeError(std::string_view key, std::string_view expected,
                                   const nlohmann::json& value) const {
  return Error(key, absl::StrCat("expected ", AsAbsl(expected), ", got ", value.type_name(), " ",
                                 value.dump().substr(0, 40)));
}

absl::StatusOr<std::optional<int64_t>> JsonFields::OptionalInt(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_unsigned()) {
    if (value->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Error(key, "integer out of range");
    }
    return static_cast<int64_t>(value->get<uint64_t>());
  }
  if (value->is_number_integer()) return value->get<int64_t>();
  // Some writers emit whole numbers as 4096.0; accept those exactly.
  if (value->is_number_float()) {
    double d = value->get<double>();
    if (d >= -9.0e15 && d <= 9.0e15 && d == static_cast<double>(static_cast<int64_t>(d))) {
      return static_cast<int64_t>(d);
    }
  }
  return TypeError(key, "an integer", *value);
}

absl::StatusOr<std::optional<double>> JsonFields::OptionalNumber(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) return TypeError(key, "a number", *value);
  return value->get<double>();
}

absl::StatusOr<std::optional<bool>> JsonFields::OptionalBool(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) return TypeError(key, "a boolean", *value);
  return value->get<bool>();
}

absl::StatusOr<std::optional<std::string>> JsonFields::OptionalString(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) return TypeError(key, "a string", *value);
  return value->get<std::string>();
}

absl::StatusOr<int64_t> JsonFields::Int(std::string_view key) const {
  auto value = OptionalInt(key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return Error(key, "missing required field");
  return **value;
}

absl::StatusOr<double> JsonFields::Number(std::string_view key) const {
  auto value = OptionalNumber(key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return Error(key, "missing required field");
  return **value;
}

absl::StatusOr<std::string> JsonFields::String(std::string_view key) const {
  auto value = OptionalString(key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return Error(key, "missing required field");
  return std::move(**value);
}

absl::StatusOr<std::vector<std::string>> JsonFields::StringList(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  std::vector<std::string> out;
  if (value == nullptr) return out;
  if (!value->is_array()) return TypeError(key, "a list of strings", *value);
  for (const nlohmann::json& item : *value) {
    if (!item.is_string()) return TypeError(key, "a list of strings", *value);
    out.push_back(item.get<std::string>());
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> JsonFields::IntOrIntList(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  std::vector<int64_t> out;
  if (value == nullptr) return out;
  if (value->is_number_integer()) {
    out.push_back(value->get<int64_t>());
    return out;
  }
  if (!value->is_array()) return TypeError(key, "an integer or a list of integers", *value);
  for (const nlohmann::json& item : *value) {
    if (!item.is_number_integer()) return TypeError(key, "a list of integers", *value);
    out.push_back(item.get<int64_t>());
  }
  return out;
}

absl::StatusOr<const nlohmann::json*> JsonFields::OptionalObject(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return nullptr;
  if (!value->is_object()) return TypeError(key, "an object", *value);
  return value;
}

}  // namespace expertmesh::model
