// Communicator over Gloo's TCP transport (Debian libgloo 0.5.0), for CPU worker groups.
// Ranks find each other through a gloo::rendezvous::Store: in production the leader's gRPC
// store (rendezvous_store.h), in tests also Gloo's in-process HashStore. Gloo reports failures
// by throwing; this class catches them at every call and returns a Status instead
// (gloo::IoException "Timed out" -> DEADLINE_EXCEEDED, other I/O errors -> UNAVAILABLE).
#ifndef EXPERTMESH_WORKER_COMM_GLOO_COMMUNICATOR_H_
#define EXPERTMESH_WORKER_COMM_GLOO_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous

namespace expertmesh::comm {

struct GlooOptions {
  int rank = 0;
  int world_size = 1;
  // The address this rank listens on and advertises to its peers ("127.0.0.1" in tests, the
  // pod IP on Kubernetes). Ports are picked by the kernel.
  std::string hostname = "127.0.0.1";
  // Bound on connecting the full mesh and on every collective.
  absl::Duration timeout = absl::Seconds(30);
};

// Connects to every peer through `store` (used only during this call) and returns the
// communicator. INVALID_ARGUMENT for bad options, DEADLINE_EXCEEDED when a peer does not show
// up within the timeout (the message names the missing key/rank), UNAVAILABLE when the
// transport cannot be set up.
absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(
    const GlooOptions& options, gloo::rendezvous::Store& store);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_GLOO_COMMUNICATOR_H_
