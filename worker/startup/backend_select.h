// Which backend a process that runs a model uses (--device cpu|cuda|auto of expertmesh-worker
// and of `expertmesh generate`), and on which GPU. ChooseDevice is a pure function of the
// request and of what the machine has, so every case is testable without a GPU; ProbeDevices
// and CreateBackend are the parts that look at the machine and build the choice.
//
//   cpu   the CPU backend.
//   cuda  the CUDA backend; an error naming why when this binary has no CUDA backend built in or
//         the machine has no usable GPU.
//   auto  CUDA when it is built in and a GPU is visible, else the CPU. A machine with no NVIDIA
//         driver loaded is the ordinary CPU case (one info line); one whose driver is loaded
//         but whose GPUs the runtime cannot use is misconfigured (a warning with the reason).
// The GPU: --cuda-device N picks device N mod the visible count (a launcher can number its
// processes 0, 1, 2, ... without knowing how many GPUs there are); the default (-1) is the
// process's local rank in its pod (EXPERTMESH_LOCAL_RANK, 0 when unset), also wrapped. Ranks that
// wrap onto a shared GPU still run; their group then talks over the host communicator
// (group_comm_select.h).
#ifndef EXPERTMESH_WORKER_STARTUP_BACKEND_SELECT_H_
#define EXPERTMESH_WORKER_STARTUP_BACKEND_SELECT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace expertmesh::server {

enum class BackendKind { kCpu, kCuda };

// What this process can use.
struct DeviceProbe {
  bool cuda_built = false;    // the binary has the CUDA backend
  int gpu_count = 0;          // visible CUDA devices
  std::string no_gpu_reason;  // why gpu_count is 0, in the driver's words (for messages)
  // An NVIDIA kernel driver is loaded (/proc/driver/nvidia exists). Without one, the CUDA
  // runtime's cudaErrorInsufficientDriver only means "no GPU here", not a fault.
  bool nvidia_driver_loaded = false;
};

struct DeviceRequest {
  std::string device = "auto";  // cpu | cuda | auto
  int cuda_device = -1;         // see the file comment
  int local_rank = 0;           // EXPERTMESH_LOCAL_RANK, 0 when unset
};

struct DeviceChoice {
  BackendKind kind = BackendKind::kCpu;
  int cuda_device = -1;  // kCuda only: the device index
  std::string reason;    // one line for the startup log, e.g. "auto: CUDA device 1 of 8"
  // Log `reason` as a warning: auto fell back to the CPU although the machine has an NVIDIA
  // driver, so a GPU was probably meant to be used.
  bool warn = false;
};

// INVALID_ARGUMENT for a --device that is not cpu|cuda|auto or a --cuda-device below -1;
// FAILED_PRECONDITION for cuda without the CUDA backend built in or without a usable GPU (the
// message says which, and the driver's reason).
absl::StatusOr<DeviceChoice> ChooseDevice(const DeviceRequest& request, const DeviceProbe& probe);

// Asks the CUDA runtime, when the CUDA backend is built in, how many GPUs are visible. Never
// aborts: a machine without a driver reports 0 devices and the reason.
DeviceProbe ProbeDevices();

struct BackendOptions {
  int cpu_threads = 0;  // CPU backend threads; 0 = all cores
  // CPU: a token's output never depends on its batch (CpuBackendOptions::batch_invariant).
  bool batch_invariant = false;
};

// The backend of `choice`: the CPU backend, or the CUDA backend on choice.cuda_device with its
// weight arena growing in chunks as the model loads (the shard's size is not known before) and
// the default launcher workspace. Errors: those of the backends' Create; FAILED_PRECONDITION
// for a CUDA choice in a binary without the CUDA backend.
absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateBackend(const DeviceChoice& choice,
                                                                const BackendOptions& options);

// Reads EXPERTMESH_LOCAL_RANK (0 when unset or not a number >= 0).
int LocalRankFromEnv();

// CPU backend threads for one rank. `requested` > 0 (--threads) is kept. 0 means "the cores":
// with `local_ranks` ranks of the group on this host, each rank gets its share, cores /
// local_ranks (at least 1), so that the ranks' compute threads together do not outnumber the
// cores; alone on the host it stays 0 (all cores). Oversubscribed, a rank's pool threads spin
// on a core its peer needs to reach the next collective, and every collective waits for the
// slowest rank.
int CpuThreadsForRank(int requested, int local_ranks, int cores);

// The cores this process may run on (its affinity mask), at least 1.
int AvailableCores();

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_STARTUP_BACKEND_SELECT_H_
