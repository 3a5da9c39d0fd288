// Byte sizes in flags: "2GiB", "512MiB", "1.5GB", "4096".
#ifndef EXPERTMESH_WORKER_STARTUP_BYTE_SIZE_H_
#define EXPERTMESH_WORKER_STARTUP_BYTE_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace expertmesh::server {

// A positive number with an optional unit: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB
// (powers of 1024); case-insensitive. INVALID_ARGUMENT naming `what` and the text otherwise.
absl::StatusOr<uint64_t> ParseByteSize(const std::string& text, const std::string& what);

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_STARTUP_BYTE_SIZE_H_
