// A worker group's rank other than 0: no scheduler, no server. It allocates the KV cache the
// leader's geometry message describes, then for every step message copies the same KV blocks
// and runs the same forward pass over its own weight shard, until the leader says stop or the
// group breaks (the communicator's error is returned: the process should exit, and the group
// be restarted as a whole).
#ifndef EXPERTMESH_WORKER_ENGINE_FOLLOWER_H_
#define EXPERTMESH_WORKER_ENGINE_FOLLOWER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "worker/comm/communicator.h"
#include "worker/models/model.h"

namespace expertmesh::engine {

struct FollowerStats {
  uint64_t steps = 0;
};

// OK after a stop message; the first error otherwise.
absl::Status RunFollower(kernels::Backend& backend, models::Model& model, comm::Communicator& comm,
                         FollowerStats* stats = nullptr);

// Leader side of the start-up handshake and the shutdown.
absl::Status SendGeometry(comm::Communicator& comm, int32_t num_blocks, int32_t block_size);
absl::Status SendStop(comm::Communicator& comm);
absl::Status SendHeartbeat(comm::Communicator& comm);

}  // namespace expertmesh::engine

#endif  // EXPERTMESH_WORKER_ENGINE_FOLLOWER_H_
