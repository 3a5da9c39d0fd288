// Reader for the safetensors format: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"k": "v"}}), then the data section the offsets index into. Files are mmapped;
// a TensorView points into the mapping (zero copy) and lives as long as its SafetensorsFile.
//
// Error policy: every message names the file (and the tensor when there is one).
//  DATA_LOSS         the file is shorter than its header says (truncated header or data).
//  INVALID_ARGUMENT  the header is malformed: not JSON, not an object, a field missing or of the
//                    wrong type, an unknown dtype, a negative or overflowing dimension, offsets
//                    out of order, overlapping, leaving holes, or disagreeing with shape x dtype.
#ifndef EXPERTMESH_MODEL_SAFETENSORS_SAFETENSORS_FILE_H_
#define EXPERTMESH_MODEL_SAFETENSORS_SAFETENSORS_FILE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/mapped_file.h"

namespace expertmesh::model {

// A tensor inside a mapped file. `data` holds NumElements() * DTypeSize(dtype) bytes in
// row-major order, with no alignment guarantee (read multi-byte values with memcpy).
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;

  int64_t NumElements() const;
};

// Element i of a bf16, f16 or f32 view as fp32 (any other dtype reads as f32: callers check).
float FloatAt(const TensorView& view, int64_t i);

// One header entry. Offsets are relative to the start of the data section.
struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;             // sorted by begin offset
  std::map<std::string, std::string> metadata;  // "__metadata__"
  uint64_t data_start = 0;  // file offset of the data section: 8 + header length
};

// The largest header accepted (as the reference implementation): bounds memory on bad input.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Parses and fully validates the header of a safetensors file held in `file` (the whole file:
// header and data, so offsets can be checked against its size). `source_name` prefixes errors.
// Never throws, never reads outside `file`.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::span<const std::byte> file,
                                                         std::string_view source_name);

class SafetensorsFile {
 public:
  // Maps and validates `path`. Errors: NOT_FOUND (no such file), DATA_LOSS / INVALID_ARGUMENT
  // (see above), INTERNAL (mmap failed).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint64_t size_bytes() const { return file_->size(); }
  const std::vector<TensorEntry>& entries() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

  bool Contains(std::string_view name) const;
  // A zero-copy view of tensor `name`. NOT_FOUND naming the file when absent.
  absl::StatusOr<TensorView> Get(std::string_view name) const;

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header);

  std::unique_ptr<MappedFile> file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in header_.tensors
};

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_SAFETENSORS_SAFETENSORS_FILE_H_
