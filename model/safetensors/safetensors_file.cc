#include "model/safetensors/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace expertmesh::model {
namespace {

absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

absl::Status Invalid(std::string_view source, std::string_view tensor, std::string_view what) {
  if (tensor.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(source), ": ", Sv(what)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(Sv(source), ": tensor '", Sv(tensor), "': ", Sv(what)));
}

// A non-negative JSON integer (nlohmann parses those as unsigned).
bool ReadUnsigned(const nlohmann::json& value, uint64_t& out) {
  if (!value.is_number_unsigned()) return false;
  out = value.get<uint64_t>();
  return true;
}

absl::StatusOr<TensorEntry> ParseEntry(const std::string& name, const nlohmann::json& value,
                                       std::string_view source) {
  if (!value.is_object()) {
    return Invalid(source, name, absl::StrCat("expected an object, got ", value.type_name()));
  }
  TensorEntry entry;
  entry.name = name;

  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end()) return Invalid(source, name, "missing 'dtype'");
  if (!dtype_it->is_string()) return Invalid(source, name, "'dtype' is not a string");
  const std::string dtype_name = dtype_it->get<std::string>();
  std::optional<DType> dtype = DTypeFromName(dtype_name);
  if (!dtype.has_value()) {
    return Invalid(source, name, absl::StrCat("unknown dtype '", dtype_name.substr(0, 32), "'"));
  }
  entry.dtype = *dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end()) return Invalid(source, name, "missing 'shape'");
  if (!shape_it->is_array()) return Invalid(source, name, "'shape' is not a list");
  // Element count with overflow checks: a bogus header must not wrap around to a small size.
  uint64_t elements = 1;
  for (const nlohmann::json& dim : *shape_it) {
    uint64_t d = 0;
    if (!ReadUnsigned(dim, d)) {
      return Invalid(source, name,
                     absl::StrCat("shape has a dimension that is not a non-negative integer: ",
                                  dim.dump().substr(0, 32)));
    }
    if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(elements, d, &elements)) {
      return Invalid(source, name, "shape overflows 64 bits");
    }
    entry.shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements, static_cast<uint64_t>(DTypeSize(entry.dtype)), &bytes)) {
    return Invalid(source, name, "byte size overflows 64 bits");
  }

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end()) return Invalid(source, name, "missing 'data_offsets'");
  if (!offsets_it->is_array() || offsets_it->size() != 2 ||
      !ReadUnsigned((*offsets_it)[0], entry.begin) || !ReadUnsigned((*offsets_it)[1], entry.end)) {
    return Invalid(source, name, "'data_offsets' is not a pair of non-negative integers");
  }
  if (entry.end < entry.begin) {
    return Invalid(source, name,
                   absl::StrCat("data_offsets [", entry.begin, ", ", entry.end,
                                "] end before "
                                "they begin"));
  }
  if (entry.end - entry.begin != bytes) {
    return Invalid(
        source, name,
        absl::StrCat("data_offsets span ", entry.end - entry.begin, " bytes but shape x dtype (",
                     Sv(DTypeName(entry.dtype)), ") needs ", bytes));
  }
  return entry;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const nlohmann::json& value,
                                                                 std::string_view source) {
  std::map<std::string, std::string> metadata;
  if (value.is_null()) return metadata;
  if (!value.is_object()) return Invalid(source, "", "__metadata__ is not an object");
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      return Invalid(source, "", absl::StrCat("__metadata__ value '", key, "' is not a string"));
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

}  // namespace

int64_t TensorView::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::span<const std::byte> file,
                                                         std::string_view source) {
  if (file.size() < 8) {
    return absl::DataLossError(absl::StrCat(Sv(source), ": truncated: ", file.size(),
                                            " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(file[static_cast<size_t>(i)]);
  }
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Invalid(source, "",
                   absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                kMaxSafetensorsHeaderBytes, " bytes (corrupt header?)"));
  }
  if (header_len > file.size() - 8) {
    return absl::DataLossError(absl::StrCat(Sv(source), ": truncated: header length ", header_len,
                                            " runs past the end of the ", file.size(),
                                            "-byte file"));
  }
  const char* text = reinterpret_cast<const char*>(file.data() + 8);
  if (header_len < 2 || text[0] != '{') {
    return Invalid(source, "", "header does not start with a JSON object");
  }
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text, text + header_len);
  } catch (const nlohmann::json::exception& e) {
    return Invalid(source, "", absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!json.is_object()) return Invalid(source, "", "header is not a JSON object");

  SafetensorsHeader header;
  header.data_start = 8 + header_len;
  for (const auto& [name, value] : json.items()) {
    if (name == "__metadata__") {
      ASSIGN_OR_RETURN(header.metadata, ParseMetadata(value, source));
      continue;
    }
    if (name.empty()) return Invalid(source, "", "a tensor has an empty name");
    ASSIGN_OR_RETURN(TensorEntry entry, ParseEntry(name, value, source));
    header.tensors.push_back(std::move(entry));
  }

  // The data section must be tiled exactly: tensors in offset order, each starting where the
  // previous one ended, the last one ending at the end of the file.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  const uint64_t data_size = file.size() - header.data_start;
  uint64_t expected_begin = 0;
  for (const TensorEntry& entry : header.tensors) {
    if (entry.begin < expected_begin) {
      return Invalid(source, entry.name,
                     absl::StrCat("data_offsets [", entry.begin, ", ", entry.end,
                                  "] overlap the previous tensor, which ends at ", expected_begin));
    }
    if (entry.begin > expected_begin) {
      return Invalid(source, entry.name,
                     absl::StrCat("data_offsets begin at ", entry.begin, " leaving a hole after ",
                                  expected_begin));
    }
    if (entry.end > data_size) {
      return absl::DataLossError(absl::StrCat(
          Sv(source), ": tensor '", entry.name, "': data_offsets [", entry.begin, ", ", entry.end,
          "] run past the end of the data section (", data_size, " bytes): truncated file?"));
    }
    expected_begin = entry.end;
  }
  if (expected_begin != data_size) {
    return Invalid(source, "",
                   absl::StrCat("data section has ", data_size - expected_begin,
                                " bytes after the last tensor (header and data disagree)"));
  }
  return header;
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header)
    : file_(std::move(file)), header_(std::move(header)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsHeader(file->bytes(), path));
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(std::move(file), std::move(header)));
}

bool SafetensorsFile::Contains(std::string_view name) const { return index_.contains(name); }

absl::StatusOr<TensorView> SafetensorsFile::Get(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat(path(), ": no tensor named '", Sv(name), "'"));
  }
  const TensorEntry& entry = header_.tensors[it->second];
  TensorView view;
  view.name = entry.name;
  view.dtype = entry.dtype;
  view.shape = entry.shape;
  view.data = file_->bytes().subspan(header_.data_start + entry.begin, entry.end - entry.begin);
  return view;
}

float FloatAt(const TensorView& view, int64_t i) {
  uint16_t bits16;
  float value = 0;
  switch (view.dtype) {
    case DType::kBF16:
      std::memcpy(&bits16, view.data.data() + 2 * i, 2);
      return Bf16ToFloat(bits16);
    case DType::kF16:
      std::memcpy(&bits16, view.data.data() + 2 * i, 2);
      return F16ToFloat(bits16);
    default:
      std::memcpy(&value, view.data.data() + 4 * i, 4);
      return value;
  }
}

}  // namespace expertmesh::model
