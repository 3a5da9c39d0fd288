// libFuzzer target: arbitrary bytes as a whole safetensors file. The parser must return a status
// for every input, never crash, hang or read outside the buffer; for accepted headers every
// tensor's byte range must lie inside the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "model/safetensors/safetensors_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  auto header = expertmesh::model::ParseSafetensorsHeader(file, "fuzz.safetensors");
  if (!header.ok()) return 0;
  for (const auto& tensor : header->tensors) {
    if (tensor.end < tensor.begin || header->data_start + tensor.end > size) std::abort();
  }
  return 0;
}
