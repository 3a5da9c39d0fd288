// Streaming safetensors writer. The header (names, dtypes, shapes, offsets) is known before any
// data, so a file of any size is written in one pass through a fixed-size buffer: a multi-GB
// checkpoint never needs its weights in memory.
//
// Format (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N
// bytes of JSON {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [begin, end]}}
// padded with spaces to a multiple of 8, then the tensor bytes back to back.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_SAFETENSORS_WRITER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_SAFETENSORS_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace expertmesh::make_model {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;

  uint64_t NumBytes() const;
};

// Produces one tensor's bytes front to back. Fill() is called repeatedly with consecutive
// pieces of the tensor (each a whole number of elements) until all of it is written.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual void Fill(std::span<std::byte> out) = 0;
};

// Opens the source for one tensor; called once per tensor, in file order.
using TensorSourceFactory = std::function<std::unique_ptr<TensorSource>(const TensorToWrite&)>;

// The header bytes (length prefix included) for `tensors` laid out in the given order.
std::string SafetensorsHeader(const std::vector<TensorToWrite>& tensors);

// Writes `tensors` to `path` (replacing it), their bytes produced by `sources`. On failure the
// partial file is removed. Errors: INTERNAL naming the path when the file cannot be created or
// written (disk full, permission), INVALID_ARGUMENT for a duplicate or empty tensor name.
absl::Status WriteSafetensorsFile(const std::string& path,
                                  const std::vector<TensorToWrite>& tensors,
                                  const TensorSourceFactory& sources);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_SAFETENSORS_WRITER_H_
