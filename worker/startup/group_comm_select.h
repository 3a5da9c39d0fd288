// Which communicator a worker group's forward pass uses. Every group forms over the host
// communicator first (shared memory on one host, else Gloo: comm_group.h). When every rank runs the
// CUDA backend on a GPU of its own, the group also forms an NCCL communicator and the models hand
// it device tensors directly; otherwise (a rank on the CPU, two ranks wrapped onto one GPU, or no
// NCCL in this binary) the tensors stay on the host communicator and device ranks stage them
// through host memory (models::Collectives). ChooseGroupComm is the pure rule; SelectGroupComm runs
// it on the group, so that every rank makes the same choice.
#ifndef EXPERTMESH_WORKER_STARTUP_GROUP_COMM_SELECT_H_
#define EXPERTMESH_WORKER_STARTUP_GROUP_COMM_SELECT_H_

#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"
#include "worker/startup/backend_select.h"

namespace expertmesh::server {

enum class CommKind { kHost, kNccl };

struct CommChoice {
  CommKind kind = CommKind::kHost;
  std::string reason;  // one line for the startup log
};

// gpus[r]: the identity of rank r's GPU (GpuIdentity), empty for a rank on the CPU.
CommChoice ChooseGroupComm(std::span<const std::string> gpus, bool nccl_built);

// A name for choice's GPU that is the same for every process using that GPU and different for
// every other GPU (its UUID); "" for the CPU. Errors: the CUDA runtime's.
absl::StatusOr<std::string> GpuIdentity(const DeviceChoice& choice);

struct GroupComm {
  CommChoice choice;
  std::unique_ptr<comm::Communicator> nccl;  // set when choice.kind == CommKind::kNccl
};

// Every rank of `host` calls this at once with its own choice: the ranks exchange their GPU
// identities over `host`, apply ChooseGroupComm to the same list, and form the NCCL
// communicator when that is the choice (`timeout` bounds its formation and its operations).
// The NCCL communicator uses `host`, which must outlive it. Errors: the host communicator's,
// GpuIdentity's, CreateNcclCommunicator's.
absl::StatusOr<GroupComm> SelectGroupComm(const DeviceChoice& choice, comm::Communicator& host,
                                          absl::Duration timeout);

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_STARTUP_GROUP_COMM_SELECT_H_
