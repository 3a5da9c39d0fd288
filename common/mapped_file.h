// Read-only memory map of a whole file. Weights are served straight from the page cache:
// views into a MappedFile are zero-copy and stay valid as long as the MappedFile lives.
#ifndef EXPERTMESH_COMMON_MAPPED_FILE_H_
#define EXPERTMESH_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace expertmesh {

class MappedFile {
 public:
  // Maps `path` read-only. Errors: NOT_FOUND (no such file), PERMISSION_DENIED, INTERNAL
  // (mmap failed). An empty file maps to an empty span.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const std::byte* data_;
  size_t size_;
};

// Drops the pages fully inside `bytes` (part of a MappedFile) from this process's page tables.
// The mapping is a read-only file mapping, so the data is still there if touched again; this
// only keeps a weight that was copied (fused, converted, repacked) from being counted twice in
// the resident set.
void ReleaseMappedPages(std::span<const std::byte> bytes);

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_MAPPED_FILE_H_
