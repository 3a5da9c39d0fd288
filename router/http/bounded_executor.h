// A fixed set of threads running queued tasks, with a cap on the queue: work the router cannot
// start soon is refused at once (the caller answers 503) instead of piling up.
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_HTTP_BOUNDED_EXECUTOR_H_
#define EXPERTMESH_ROUTER_HTTP_BOUNDED_EXECUTOR_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace expertmesh::router::http {

class BoundedExecutor {
 public:
  // `threads` workers; at most `max_queued` tasks waiting for one.
  BoundedExecutor(int threads, int max_queued);
  // Runs the tasks already queued, then joins.
  ~BoundedExecutor();

  // False (task dropped) when the queue is full or the executor is shutting down.
  bool TrySubmit(std::function<void()> task);

  int busy() const;
  int queued() const;

 private:
  void Work();

  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_BOUNDED_EXECUTOR_H_
