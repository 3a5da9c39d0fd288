#include "kernels/cuda/device_info.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace expertmesh::cuda {

absl::StatusOr<std::vector<DeviceInfo>> ListDevices() {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    return absl::UnavailableError(
        absl::StrCat("no usable CUDA device: cudaGetDeviceCount: ", cudaGetErrorName(error), " (",
                     cudaGetErrorString(error), ")"));
  }
  if (count == 0) return absl::UnavailableError("no CUDA device visible");
  std::vector<DeviceInfo> devices;
  for (int index = 0; index < count; ++index) {
    cudaDeviceProp properties{};
    error = cudaGetDeviceProperties(&properties, index);
    if (error != cudaSuccess) {
      return absl::UnavailableError(
          absl::StrCat("cudaGetDeviceProperties(", index, "): ", cudaGetErrorString(error)));
    }
    devices.push_back(DeviceInfo{
        .index = index,
        .name = properties.name,
        .compute_capability_major = properties.major,
        .compute_capability_minor = properties.minor,
        .total_memory_bytes = static_cast<uint64_t>(properties.totalGlobalMem),
        .multiprocessors = properties.multiProcessorCount,
    });
  }
  return devices;
}

std::string CudaRuntimeVersion() {
  int version = 0;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) return "unknown";
  return absl::StrCat(version / 1000, ".", (version % 1000) / 10);
}

std::string NcclVersion() {
  int version = 0;
  if (ncclGetVersion(&version) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return absl::StrCat(version / 10000, ".", (version % 10000) / 100, ".", version % 100);
}

}  // namespace expertmesh::cuda
