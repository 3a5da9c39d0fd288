// What CUDA devices this process can use. Host-only: callers never see CUDA types, so the
// runtime can ask "is there a GPU?" (for --device auto) without including CUDA headers.
#ifndef EXPERTMESH_KERNELS_CUDA_DEVICE_INFO_H_
#define EXPERTMESH_KERNELS_CUDA_DEVICE_INFO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  uint64_t total_memory_bytes = 0;
  int multiprocessors = 0;
};

// Lists the visible devices. UNAVAILABLE with the CUDA error text when the driver reports no
// usable device (e.g. no GPU, error 35 on a machine without a driver); never aborts.
absl::StatusOr<std::vector<DeviceInfo>> ListDevices();

// Versions of the CUDA runtime and NCCL this binary was linked against ("13.0", "2.28.9").
std::string CudaRuntimeVersion();
std::string NcclVersion();

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_DEVICE_INFO_H_
