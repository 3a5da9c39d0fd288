#include "tests/model/grammar/json_instance.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

namespace expertmesh::grammar::testing {
namespace {

using Json = JsonInstanceGenerator::Json;

// Values of string formats and patterns (each matches its key).
const std::map<std::string, std::vector<std::string>>& Samples() {
  static const auto* samples = new std::map<std::string, std::vector<std::string>>{
      {"format:date", {"2024-02-29", "2000-02-29", "1999-12-31", "0001-01-01", "2023-04-30"}},
      {"format:time", {"23:59:59Z", "08:15:00.123+05:30", "00:00:00z"}},
      {"format:date-time", {"2024-06-01T12:00:00Z", "2024-06-01t12:00:00.5-07:00"}},
      {"format:uuid",
       {"123e4567-e89b-12d3-a456-426614174000", "FFFFFFFF-0000-1111-AAAA-bbbbbbbbbbbb"}},
      {"format:email", {"first.last+tag@mail.example.org", "x@y.co"}},
      {"format:ipv4", {"192.168.0.1", "255.255.255.0", "8.8.8.8"}},
      {"format:hostname", {"example.com", "a-b.c", "localhost"}},
      {"pattern:^\\+?[0-9]{1,3}-[0-9]{3}-[0-9]{4}$", {"+1-555-0100", "44-207-1234"}},
      {"pattern:^[a-z0-9]+(?:-[a-z0-9]+)*$", {"my-slug-2", "abc"}},
      {"pattern:@", {"user@example.com", "@", "a \"quoted\" @ \\ sign\n"}},
      {"pattern:^#(?:[0-9a-fA-F]{3}){1,2}$", {"#fff", "#A0b1C2"}},
      {"pattern:^[A-Z]{3}-\\d{4}$", {"ABC-1234", "XYZ-0000"}},
  };
  return *samples;
}

// Code points the random strings draw from: ASCII, JSON's escaped characters, and multi-byte
// UTF-8.
const std::vector<std::string> kPieces = {"a",  "Z",  "7",  " ",  "-",    "é", "中", "😀",
                                          "\"", "\\", "\n", "\t", "\x01", "/", "{",  "}"};

}  // namespace

const Json& JsonInstanceGenerator::Resolve(const Json& schema) const {
  const Json* s = &schema;
  for (int hops = 0; hops < 16 && s->is_object() && s->contains("$ref"); ++hops) {
    const std::string ref = (*s)["$ref"].get<std::string>();
    const Json* target = &root_;
    size_t pos = 1;
    while (pos < ref.size()) {
      const size_t next = std::min(ref.find('/', pos + 1), ref.size());
      target = &(*target)[ref.substr(pos + 1, next - pos - 1)];
      pos = next;
    }
    s = target;
  }
  return *s;
}

Json JsonInstanceGenerator::Generate() {
  used_container_literal_ = false;
  error_.clear();
  return Value(root_, 0);
}

Json JsonInstanceGenerator::AnyValue(int depth) {
  switch (Uniform(0, depth > 2 ? 4 : 6)) {
    case 0:
      return nullptr;
    case 1:
      return Coin();
    case 2:
      return Uniform(-1000, 1000);
    case 3:
      return Uniform(-100000, 100000) / 64.0;
    case 4:
      return RandomString(0, 6);
    case 5: {
      Json a = Json::array();
      for (int64_t i = Uniform(0, 3); i > 0; --i) a.push_back(AnyValue(depth + 1));
      return a;
    }
    default: {
      Json o = Json::object();
      for (int64_t i = Uniform(0, 3); i > 0; --i) o["k" + std::to_string(i)] = AnyValue(depth + 1);
      return o;
    }
  }
}

std::string JsonInstanceGenerator::RandomString(int64_t min_length, int64_t max_length) {
  const int64_t length = Uniform(min_length, std::min(max_length, min_length + 8));
  std::string s;
  for (int64_t i = 0; i < length; ++i) s += kPieces[Uniform(0, kPieces.size() - 1)];
  return s;
}

Json JsonInstanceGenerator::Value(const Json& in, int depth) {
  const Json& schema = Resolve(in);
  if (schema.is_boolean() || schema.empty()) return AnyValue(depth);
  const auto literal = [&](const Json& v) {
    if ((v.is_object() || v.is_array()) && !v.empty()) used_container_literal_ = true;
    return v;
  };
  if (schema.contains("const")) return literal(schema["const"]);
  if (schema.contains("enum"))
    return literal(schema["enum"][Uniform(0, schema["enum"].size() - 1)]);
  for (const char* keyword : {"anyOf", "oneOf"}) {
    if (!schema.contains(keyword)) continue;
    const Json& options = schema[keyword];
    // Deep down, prefer an alternative that ends the recursion (null, or not a $ref).
    if (depth > 3) {
      for (const Json& option : options) {
        if (!option.contains("$ref")) return Value(option, depth + 1);
      }
    }
    return Value(options[Uniform(0, options.size() - 1)], depth + 1);
  }
  if (schema.contains("allOf")) return Value(schema["allOf"][0], depth);
  std::vector<std::string> types;
  if (schema.contains("type")) {
    if (schema["type"].is_string()) {
      types.push_back(schema["type"]);
    } else {
      for (const Json& t : schema["type"]) types.push_back(t);
    }
  } else if (schema.contains("properties") || schema.contains("required")) {
    types.push_back("object");
  } else if (schema.contains("items") || schema.contains("prefixItems")) {
    types.push_back("array");
  } else {
    return AnyValue(depth);
  }
  // Deep down, null ends recursion when allowed.
  if (depth > 3 && std::find(types.begin(), types.end(), "null") != types.end()) return nullptr;
  return Typed(types[Uniform(0, types.size() - 1)], schema, depth);
}

Json JsonInstanceGenerator::Typed(const std::string& type, const Json& schema, int depth) {
  if (type == "null") return nullptr;
  if (type == "boolean") return Coin();
  if (type == "string") {
    for (const char* keyword : {"format", "pattern"}) {
      if (!schema.contains(keyword)) continue;
      const std::string key = std::string(keyword) + ":" + schema[keyword].get<std::string>();
      const auto it = Samples().find(key);
      if (it == Samples().end()) {
        error_ = "no samples for " + key;
        return "";
      }
      return it->second[Uniform(0, it->second.size() - 1)];
    }
    return RandomString(schema.value("minLength", 0), schema.value("maxLength", 1000));
  }
  if (type == "integer" || type == "number") {
    const auto bound = [&](const char* keyword, double fallback) {
      return schema.contains(keyword) ? schema[keyword].get<double>() : fallback;
    };
    double lo = std::max(bound("minimum", -1e6), bound("exclusiveMinimum", -1e6 - 1) + 1);
    double hi = std::min(bound("maximum", 1e6), bound("exclusiveMaximum", 1e6 + 1) - 1);
    if (type == "integer") return Uniform(static_cast<int64_t>(lo), static_cast<int64_t>(hi));
    // Numbers: hundredths in the (possibly open) interval, or exactly an inclusive bound.
    lo = std::max(bound("minimum", -1e6), bound("exclusiveMinimum", -1e6 - 1) + 0.01);
    hi = std::min(bound("maximum", 1e6), bound("exclusiveMaximum", 1e6 + 1) - 0.01);
    if (Uniform(0, 4) == 0 && schema.contains("minimum")) return schema["minimum"];
    const double v = std::round((lo + (hi - lo) * Uniform(0, 1000) / 1000.0) * 100) / 100;
    return std::clamp(v, lo, hi);
  }
  if (type == "array") {
    std::vector<const Json*> prefix;
    if (schema.contains("prefixItems")) {
      for (const Json& p : schema["prefixItems"]) prefix.push_back(&p);
    }
    const Json items = schema.value("items", Json(true));
    const int64_t min_items = schema.value("minItems", 0);
    int64_t max_items = schema.value("maxItems", int64_t{1} << 30);
    if (items == Json(false)) max_items = std::min<int64_t>(max_items, prefix.size());
    const int64_t count =
        depth > 3 ? min_items : Uniform(min_items, std::min(max_items, min_items + 3));
    Json a = Json::array();
    for (int64_t i = 0; i < count; ++i) {
      a.push_back(Value(i < static_cast<int64_t>(prefix.size()) ? *prefix[i] : items, depth + 1));
    }
    return a;
  }
  // object
  Json o = Json::object();
  std::vector<std::string> required;
  if (schema.contains("required")) {
    for (const Json& r : schema["required"]) required.push_back(r);
  }
  if (schema.contains("properties")) {
    for (const auto& [key, sub] : schema["properties"].items()) {
      const bool is_required = std::find(required.begin(), required.end(), key) != required.end();
      if (is_required || (depth <= 3 && Coin())) o[key] = Value(sub, depth + 1);
    }
  }
  const Json additional = schema.value("additionalProperties", Json(false));
  if (additional != Json(false) && depth <= 3) {
    for (int64_t i = Uniform(0, 2); i > 0; --i) {
      o["extra \"" + std::to_string(i) + "\""] = Value(additional, depth + 1);
    }
  }
  return o;
}

}  // namespace expertmesh::grammar::testing
