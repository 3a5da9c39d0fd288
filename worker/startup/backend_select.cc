#include "worker/startup/backend_select.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"

#if EXPERTMESH_HAVE_CUDA
#include "kernels/cuda/backend/cuda_backend.h"
#include "kernels/cuda/device_info.h"
#endif

namespace expertmesh::server {

absl::StatusOr<DeviceChoice> ChooseDevice(const DeviceRequest& request, const DeviceProbe& probe) {
  if (request.device != "cpu" && request.device != "cuda" && request.device != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be cpu, cuda or auto, got \"", request.device, "\""));
  }
  if (request.cuda_device < -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cuda-device must be >= 0, or -1 for the local rank, got ", request.cuda_device));
  }
  if (request.local_rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("local rank must be >= 0, got ", request.local_rank));
  }
  if (request.device == "cpu") return DeviceChoice{.kind = BackendKind::kCpu, .reason = "cpu"};

  const bool cuda = request.device == "cuda";
  if (!probe.cuda_built) {
    if (cuda) {
      return absl::FailedPreconditionError(
          "--device cuda: this binary was built without the CUDA backend (configure with "
          "-DEXPERTMESH_CUDA=ON on a machine with the CUDA toolkit)");
    }
    return DeviceChoice{.kind = BackendKind::kCpu,
                        .reason = "auto: running on the CPU (this binary has no CUDA backend)"};
  }
  if (probe.gpu_count < 1) {
    const std::string why =
        probe.no_gpu_reason.empty() ? "no CUDA device visible" : probe.no_gpu_reason;
    if (cuda) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device cuda: no usable GPU on this machine (", why, ")"));
    }
    if (!probe.nvidia_driver_loaded) {
      // The runtime's error here (cudaErrorInsufficientDriver, as it names a missing driver)
      // is left out: on a machine without a GPU it reads like a failure, and nothing failed.
      return DeviceChoice{.kind = BackendKind::kCpu,
                          .reason = "auto: no GPU on this machine, running on the CPU"};
    }
    return DeviceChoice{
        .kind = BackendKind::kCpu,
        .reason = absl::StrCat("auto: an NVIDIA driver is loaded but no GPU is usable (", why,
                               "); running on the CPU"),
        .warn = true};
  }
  const int wanted = request.cuda_device >= 0 ? request.cuda_device : request.local_rank;
  const int device = wanted % probe.gpu_count;
  std::string reason =
      absl::StrCat(request.device, ": CUDA device ", device, " of ", probe.gpu_count);
  if (device != wanted) {
    absl::StrAppend(&reason, " (", request.cuda_device >= 0 ? "--cuda-device " : "local rank ",
                    wanted, " wrapped onto the visible devices)");
  }
  return DeviceChoice{.kind = BackendKind::kCuda, .cuda_device = device, .reason = reason};
}

DeviceProbe ProbeDevices() {
  DeviceProbe probe;
  std::error_code error;
  probe.nvidia_driver_loaded = std::filesystem::exists("/proc/driver/nvidia", error);
#if EXPERTMESH_HAVE_CUDA
  probe.cuda_built = true;
  absl::StatusOr<std::vector<cuda::DeviceInfo>> devices = cuda::ListDevices();
  if (devices.ok()) {
    probe.gpu_count = static_cast<int>(devices->size());
  } else {
    probe.no_gpu_reason = std::string(devices.status().message());
  }
#endif
  return probe;
}

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateBackend(const DeviceChoice& choice,
                                                                const BackendOptions& options) {
  if (choice.kind == BackendKind::kCpu) {
    kernels::cpu::CpuBackendOptions cpu_options;
    cpu_options.num_threads = options.cpu_threads;
    cpu_options.batch_invariant = options.batch_invariant;
    ASSIGN_OR_RETURN(std::unique_ptr<kernels::cpu::CpuBackend> cpu,
                     kernels::cpu::CpuBackend::Create(cpu_options));
    return std::unique_ptr<kernels::Backend>(std::move(cpu));
  }
#if EXPERTMESH_HAVE_CUDA
  // Weight arena 0: it grows in chunks while the shard loads (only the loader knows the shard's
  // bytes, dtype conversions included); the workspace and staging keep the backend's defaults.
  cuda::CudaBackendOptions cuda_options;
  cuda_options.device = choice.cuda_device;
  cuda_options.weight_arena_bytes = 0;
  return cuda::CreateCudaBackend(cuda_options);
#else
  return absl::FailedPreconditionError(
      "a CUDA backend was chosen, but this binary was built without it");
#endif
}

int LocalRankFromEnv() {
  const char* value = std::getenv("EXPERTMESH_LOCAL_RANK");
  int rank = 0;
  if (value == nullptr || !absl::SimpleAtoi(value, &rank) || rank < 0) return 0;
  return rank;
}

int CpuThreadsForRank(int requested, int local_ranks, int cores) {
  if (requested > 0 || local_ranks <= 1) return requested;
  return std::max(1, cores / local_ranks);
}

int AvailableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace expertmesh::server
