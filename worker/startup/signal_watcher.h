// SIGINT/SIGTERM for a process that drains before it exits: the first signal notifies
// first() (the caller drains and returns), a second one exits at once. Signals become bytes on a
// pipe that one thread reads (threads that libraries start before main, e.g. BLAS pools, do not
// block signals, so a handler is the reliable way). One instance per process.
#ifndef EXPERTMESH_WORKER_STARTUP_SIGNAL_WATCHER_H_
#define EXPERTMESH_WORKER_STARTUP_SIGNAL_WATCHER_H_

#include <thread>

#include "absl/synchronization/notification.h"

namespace expertmesh::server {

class SignalWatcher {
 public:
  SignalWatcher();
  absl::Notification& first() { return first_; }
  int signal() const { return signal_; }

 private:
  std::thread thread_;
  absl::Notification first_;
  int signal_ = 0;
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_STARTUP_SIGNAL_WATCHER_H_
