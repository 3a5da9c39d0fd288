#include "worker/startup/group_comm_select.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

#if EXPERTMESH_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "worker/comm/nccl_communicator.h"
#endif

namespace expertmesh::server {
namespace {

// Each rank's identity travels as a fixed-size, zero-padded field of one all-gather.
constexpr size_t kIdentityBytes = 64;

}  // namespace

CommChoice ChooseGroupComm(std::span<const std::string> gpus, bool nccl_built) {
  if (gpus.size() < 2) return {CommKind::kHost, "one rank: no collectives"};
  absl::flat_hash_map<std::string, size_t> owner;
  for (size_t r = 0; r < gpus.size(); ++r) {
    if (gpus[r].empty()) {
      return {CommKind::kHost, absl::StrCat("host communicator: rank ", r, " runs on the CPU")};
    }
    auto [it, inserted] = owner.emplace(gpus[r], r);
    if (!inserted) {
      return {CommKind::kHost,
              absl::StrCat("host communicator with host staging: ranks ", it->second, " and ", r,
                           " share GPU ", gpus[r], " (NCCL needs a GPU per rank)")};
    }
  }
  if (!nccl_built) {
    return {CommKind::kHost, "host communicator with host staging: this binary has no NCCL"};
  }
  return {CommKind::kNccl, absl::StrCat("nccl: ", gpus.size(), " ranks, a GPU each")};
}

absl::StatusOr<std::string> GpuIdentity(const DeviceChoice& choice) {
  if (choice.kind == BackendKind::kCpu) return std::string();
#if EXPERTMESH_HAVE_CUDA
  cudaDeviceProp properties{};
  if (const cudaError_t e = cudaGetDeviceProperties(&properties, choice.cuda_device);
      e != cudaSuccess) {
    return absl::UnavailableError(
        absl::StrCat("cudaGetDeviceProperties(", choice.cuda_device, "): ", cudaGetErrorString(e)));
  }
  std::string id = "GPU-";
  for (char byte : properties.uuid.bytes) {
    absl::StrAppend(&id, absl::Hex(static_cast<unsigned char>(byte), absl::kZeroPad2));
  }
  return id;
#else
  return absl::FailedPreconditionError(
      "a CUDA device was chosen, but this binary was built without the CUDA backend");
#endif
}

absl::StatusOr<GroupComm> SelectGroupComm(const DeviceChoice& choice, comm::Communicator& host,
                                          absl::Duration timeout) {
  ASSIGN_OR_RETURN(std::string mine, GpuIdentity(choice));
  const int world = host.world_size();
  std::vector<char> send(kIdentityBytes, '\0');
  std::memcpy(send.data(), mine.data(), std::min(mine.size(), kIdentityBytes - 1));
  std::vector<char> all(kIdentityBytes * world, '\0');
  RETURN_IF_ERROR(host.AllGather(std::as_bytes(std::span<const char>(send)),
                                 std::as_writable_bytes(std::span<char>(all)), DType::kU8));
  std::vector<std::string> gpus;
  for (int r = 0; r < world; ++r) {
    const char* field = all.data() + r * kIdentityBytes;
    gpus.emplace_back(field, strnlen(field, kIdentityBytes));
  }
  GroupComm result;
  result.choice = ChooseGroupComm(gpus, /*nccl_built=*/EXPERTMESH_HAVE_CUDA != 0);
  if (result.choice.kind == CommKind::kHost) return result;
#if EXPERTMESH_HAVE_CUDA
  ASSIGN_OR_RETURN(result.nccl, comm::CreateNcclCommunicator(
                                    {.device = choice.cuda_device, .timeout = timeout}, host));
#endif
  return result;
}

}  // namespace expertmesh::server
