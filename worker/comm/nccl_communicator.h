// Communicator over NCCL, for worker groups whose ranks each own a GPU. Buffers are device
// memory of the rank's device (device_buffers() is true). No CUDA or NCCL types here, so the
// worker can include this header without the toolkit's headers.
//
// Forming the group: every rank passes a host communicator of the same group (Gloo, or the fake
// in tests). Each rank checks its device, the ranks agree over the host communicator that all
// of them can go on (a rank without a usable GPU fails every rank at once, named), rank 0 (the
// leader) creates the ncclUniqueId and broadcasts it over the host communicator, and NCCL joins
// in non-blocking mode, so the wait for a rank that never comes is bounded by the timeout.
//
// Streams (see Communicator for the rest of the contract):
// - StreamHandle{} (null): the operation runs on the communicator's own stream and is complete
//   when the call returns (this is how models::Collectives calls it, after synchronising its
//   backend). The wait is bounded: a peer that is gone (an NCCL network error) or that does not
//   take part within the timeout makes the call fail.
// - StreamHandle{cudaStream_t}: the operation is enqueued on that stream after the work already
//   there, and the call returns without waiting. A watchdog thread follows the enqueued work:
//   when it does not finish within the timeout, or NCCL reports a network error, the watchdog
//   aborts the NCCL communicator (the stuck kernels then exit, so the stream does not hang
//   forever; the buffers hold garbage) and the next call reports the failure. Work enqueued
//   during CUDA graph capture runs when the graph is launched and is not followed.
// BroadcastBytes and Barrier run over the host communicator.
//
// Errors, besides the argument checks every transport makes: INVALID_ARGUMENT when a buffer is
// not device memory of this rank's device (before any communication: the communicator stays
// usable); UNAVAILABLE when NCCL reports a network or system error (a peer died);
// DEADLINE_EXCEEDED when an operation does not complete within the timeout; INTERNAL for other
// NCCL or CUDA failures. The last three break the communicator (ncclCommAbort), as the
// Communicator contract says. Messages name the rank and the operation.
#ifndef EXPERTMESH_WORKER_COMM_NCCL_COMMUNICATOR_H_
#define EXPERTMESH_WORKER_COMM_NCCL_COMMUNICATOR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"

namespace expertmesh::comm {

struct NcclOptions {
  // The CUDA device of this rank. NCCL runs one rank of a communicator per device: two ranks of
  // one group on one GPU must use a host communicator instead.
  int device = 0;
  // Bound on forming the group and on every operation (see the file comment).
  absl::Duration timeout = absl::Seconds(60);
};

// Builds this rank's NCCL communicator; every rank of `host` calls it at the same time. `host`
// gives the rank and world size, must outlive the result and is used by the result's thread
// only from then on. Errors: INVALID_ARGUMENT for a non-positive timeout; FAILED_PRECONDITION
// when this rank's device is not usable (no GPU, index out of range) or another rank's is (that
// rank named), on every rank; the host communicator's error when the agreement or the id
// broadcast fails; DEADLINE_EXCEEDED when the NCCL group does not form within the timeout;
// UNAVAILABLE / INTERNAL for NCCL's own failures.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclOptions& options,
                                                                     Communicator& host);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_NCCL_COMMUNICATOR_H_
