// With several ranks per pod (one per GPU), the process the pod starts is a launcher: it runs
// one copy of this program per local rank (EXPERTMESH_LOCAL_RANK = 0..n-1), passes signals on,
// and when one rank exits with an error stops the others and exits with that error, so the
// pod fails as a whole (and LeaderWorkerSet recreates the group).
#ifndef EXPERTMESH_WORKER_STARTUP_POD_LAUNCHER_H_
#define EXPERTMESH_WORKER_STARTUP_POD_LAUNCHER_H_

#include "worker/startup/signal_watcher.h"

namespace expertmesh::server {

// Returns the process's exit code.
int RunPodLauncher(int ranks, char** argv, SignalWatcher& signals, double grace_s);

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_STARTUP_POD_LAUNCHER_H_
