// An in-process communicator for tests: the ranks are threads of one process sharing memory.
// Results are exact and deterministic: reductions sum in fp32 in rank order, data movement is
// plain copies, so it doubles as the reference that the Gloo and NCCL transports are checked
// against. It also checks what real transports cannot: every rank must call the same
// collective with consistent sizes and counts, else all ranks get INTERNAL.
//
// Leaving: destroying a rank's communicator counts as that rank's process exiting; ranks that
// wait for it in a collective fail with UNAVAILABLE at once. A rank that simply does not come
// makes the others fail with DEADLINE_EXCEEDED after `timeout`.
#ifndef EXPERTMESH_TESTS_WORKER_COMM_FAKE_COMMUNICATOR_H_
#define EXPERTMESH_TESTS_WORKER_COMM_FAKE_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "worker/comm/communicator.h"

namespace expertmesh::comm {

// Returns world_size communicators, element r being rank r; hand each to its own thread.
// REQUIRES: world_size >= 1.
std::vector<std::unique_ptr<Communicator>> CreateFakeGroup(int world_size, absl::Duration timeout);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_TESTS_WORKER_COMM_FAKE_COMMUNICATOR_H_
