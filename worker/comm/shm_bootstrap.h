// Whether the ranks of a group share a host, decided by the group itself over its first
// (Gloo) communicator, and if so its shared-memory communicator.
//
// The leader creates a segment under a random name with a random cookie (shm_segment.h) and
// broadcasts the offer; every other rank tries to open it and check the cookie; an all-gather
// of the outcomes lets every rank reach the same verdict. A rank that runs on another host, in
// another container or IPC namespace, or as another user cannot open the segment: then the
// group keeps Gloo. Addresses and host names are never compared (a host has many names, and
// two pods on one node share an address space of neither).
#ifndef EXPERTMESH_WORKER_COMM_SHM_BOOTSTRAP_H_
#define EXPERTMESH_WORKER_COMM_SHM_BOOTSTRAP_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/comm/shm_communicator.h"
#include "worker/comm/shm_segment.h"

namespace expertmesh::comm {

struct ShmProbeOptions {
  // This rank's wish: false keeps Gloo even where shared memory works (the probe still runs,
  // so local_ranks is known). The group uses shared memory only if every rank wishes it.
  bool use_shm = true;
  // Fail (FAILED_PRECONDITION) instead of keeping Gloo when shared memory cannot be used.
  bool require_shm = false;
  size_t chunk_bytes = kShmDefaultChunkBytes;
  ShmOptions shm;
};

struct ShmProbeResult {
  // Ranks of the group that share the leader's /dev/shm, if this rank is one of them; else 1.
  int local_ranks = 1;
  // The shared-memory communicator, when the group chose it (on every rank alike).
  std::unique_ptr<Communicator> comm;
  // One line for the log: the transport and why.
  std::string reason;
};

// Every rank of `host` calls this at once. Errors: the host communicator's (the group is then
// broken), CreateShmCommunicator's, and FAILED_PRECONDITION under require_shm.
absl::StatusOr<ShmProbeResult> ProbeSharedMemory(Communicator& host,
                                                 const ShmProbeOptions& options);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_SHM_BOOTSTRAP_H_
