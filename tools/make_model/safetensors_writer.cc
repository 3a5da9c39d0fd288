#include "tools/make_model/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace expertmesh::make_model {
namespace {

// Elements are produced in pieces of this many bytes: large enough for fast fwrite, small
// enough that memory stays flat whatever the model size.
constexpr size_t kChunkBytes = size_t{4} << 20;

struct FileCloser {
  void operator()(FILE* f) const {
    if (f != nullptr) std::fclose(f);
  }
};

}  // namespace

uint64_t TensorToWrite::NumBytes() const {
  uint64_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::string SafetensorsHeader(const std::vector<TensorToWrite>& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    const uint64_t end = offset + t.NumBytes();
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string json = header.dump();
  // Pad so that the data section starts 8-byte aligned, as the reference writer does.
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json;
}

absl::Status WriteSafetensorsFile(const std::string& path,
                                  const std::vector<TensorToWrite>& tensors,
                                  const TensorSourceFactory& sources) {
  std::set<std::string> names;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || !names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": empty or duplicate tensor name '", t.name, "'"));
    }
  }
  std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "wb"));
  if (file == nullptr) {
    return absl::InternalError(absl::StrCat(path, ": cannot create file: ", std::strerror(errno)));
  }
  auto fail = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    file.reset();
    std::remove(path.c_str());
    return absl::InternalError(absl::StrCat(path, ": ", what, ": ", reason));
  };
  const std::string header = SafetensorsHeader(tensors);
  if (std::fwrite(header.data(), 1, header.size(), file.get()) != header.size()) {
    return fail("write failed");
  }
  std::vector<std::byte> buffer(kChunkBytes);
  for (const TensorToWrite& t : tensors) {
    std::unique_ptr<TensorSource> source = sources(t);
    const size_t element = DTypeSize(t.dtype);
    const size_t chunk = kChunkBytes / element * element;
    uint64_t left = t.NumBytes();
    while (left > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, chunk));
      std::span<std::byte> piece(buffer.data(), n);
      source->Fill(piece);
      if (std::fwrite(piece.data(), 1, n, file.get()) != n) return fail("write failed");
      left -= n;
    }
  }
  if (std::fflush(file.get()) != 0) return fail("flush failed");
  if (std::fclose(file.release()) != 0) {
    std::remove(path.c_str());
    return absl::InternalError(absl::StrCat(path, ": close failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::make_model
