// A minimal safetensors writer for tests: builds well-formed files from tensors, or raw files
// from a hand-written header, so readers can be tested on good and bad bytes alike.
#ifndef EXPERTMESH_TESTS_MODEL_SAFETENSORS_SAFETENSORS_WRITER_H_
#define EXPERTMESH_TESTS_MODEL_SAFETENSORS_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "nlohmann/json.hpp"

namespace expertmesh::model::testing {

struct TestTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;  // raw little-endian payload
};

// Raw file: 8-byte little-endian length of `header`, `header`, `data`.
inline std::string RawFile(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// A well-formed file holding `tensors` back to back, with optional metadata.
inline std::string BuildFile(const std::vector<TestTensor>& tensors,
                             const nlohmann::json& metadata = nullptr) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const TestTensor& t : tensors) {
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  return RawFile(header.dump(), data);
}

inline void WriteFile(const std::string& path, const std::string& contents) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
}

template <typename T>
std::string Bytes(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A fresh scratch directory under the build tree for one test.
inline std::string ScratchDir(const std::string& name) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test_scratch/safetensors/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace expertmesh::model::testing

#endif  // EXPERTMESH_TESTS_MODEL_SAFETENSORS_SAFETENSORS_WRITER_H_
