// At most `max_threads` threads for blocking work, started on demand and kept for reuse, and at
// most `max_queued` tasks waiting for one: work that cannot start soon is refused at once (the
// caller answers 503 or RESOURCE_EXHAUSTED) instead of piling up in memory or threads. With
// max_queued 0 every accepted task starts at once on a thread of its own.
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_COMMON_BOUNDED_EXECUTOR_H_
#define EXPERTMESH_COMMON_BOUNDED_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace expertmesh {

class BoundedExecutor {
 public:
  // REQUIRES: max_threads >= 1, max_queued >= 0.
  BoundedExecutor(int max_threads, int max_queued)
      : max_threads_(max_threads), max_queued_(max_queued) {}
  // Runs the tasks already accepted, then joins every thread.
  ~BoundedExecutor();

  BoundedExecutor(const BoundedExecutor&) = delete;
  BoundedExecutor& operator=(const BoundedExecutor&) = delete;

  // False (and `task` dropped unrun) when max_threads tasks run and max_queued wait, or when
  // shutting down.
  bool TrySubmit(std::function<void()> task);

  // Tasks accepted and not finished (queued + running); threads started so far.
  int pending() const;
  int threads() const;

 private:
  void Loop();

  const int max_threads_;
  const int max_queued_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_BOUNDED_EXECUTOR_H_
