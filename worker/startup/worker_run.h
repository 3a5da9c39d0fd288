// What expertmesh-worker does once its flags are parsed: the composition root of a worker
// process. It picks the backend (--device, backend_select.h) and the group's communicator
// (group_comm_select.h), loads this rank's shard, and on the leader wires the engine, the loop
// that drives it (worker/serving) and the gRPC service (worker/service) together; other ranks
// follow the leader's steps (worker/engine/follower.h).
#ifndef EXPERTMESH_WORKER_STARTUP_WORKER_RUN_H_
#define EXPERTMESH_WORKER_STARTUP_WORKER_RUN_H_

#include "absl/status/status.h"
#include "worker/startup/signal_watcher.h"
#include "worker/startup/worker_flags.h"

namespace expertmesh::server {

// Serves until the first signal (drained) or until the group breaks (an error).
absl::Status RunWorker(const WorkerFlags& flags, SignalWatcher& signals);

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_STARTUP_WORKER_RUN_H_
