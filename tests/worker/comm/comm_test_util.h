// Builds groups of communicators whose ranks are threads of the test process, and runs a
// function on every rank at once.
#ifndef EXPERTMESH_TESTS_WORKER_COMM_COMM_TEST_UTIL_H_
#define EXPERTMESH_TESTS_WORKER_COMM_COMM_TEST_UTIL_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/comm_group.h"
#include "worker/comm/communicator.h"

namespace expertmesh::comm::testing {

enum class Transport {
  kFake,
  kGlooHashStore,  // Gloo over 127.0.0.1, rendezvous through Gloo's in-process HashStore
  kGlooGrpc,       // Gloo over 127.0.0.1, rendezvous through CommGroup::Join (gRPC, port 0),
                   // transport forced to Gloo
  kShm,            // shared memory, one segment attached by every rank thread; a 4 KiB chunk, so
                   // that every collective of a few KiB already takes several rounds
  kShmJoin,        // CommGroup::Join with the automatic transport choice, which must pick shm
};
std::string TransportName(Transport transport);

struct ThreadGroup {
  std::vector<std::unique_ptr<Communicator>> comms;  // rank r at index r
  std::vector<std::unique_ptr<CommGroup>> groups;    // kGlooGrpc, kShmJoin; groups[r]->comm()
  Communicator& rank(int r) { return groups.empty() ? *comms[r] : groups[r]->comm(); }
};

absl::StatusOr<ThreadGroup> MakeThreadGroup(Transport transport, int world_size,
                                            absl::Duration timeout);

// The chunk of Transport::kShm groups.
inline constexpr size_t kTestShmChunkBytes = 4096;

// Runs fn(rank) on world_size threads at once and returns each rank's status.
std::vector<absl::Status> RunOnRanks(int world_size,
                                     const std::function<absl::Status(int rank)>& fn);

}  // namespace expertmesh::comm::testing

#endif  // EXPERTMESH_TESTS_WORKER_COMM_COMM_TEST_UTIL_H_
