// A pool of at most `max_threads` threads for blocking work (a gRPC Generate call holds one
// for its whole generation). Threads start on demand and stay for reuse; when all are busy,
// TrySchedule refuses at once instead of queueing or creating more, so the number of threads
// a burst of calls can create is bounded.
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_PRODUCER_POOL_H_
#define EXPERTMESH_ROUTER_PRODUCER_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace expertmesh::router {

class ProducerPool {
 public:
  // REQUIRES: max_threads >= 1.
  explicit ProducerPool(int max_threads) : max_threads_(max_threads) {}
  // Runs what was accepted, then joins every thread.
  ~ProducerPool();

  ProducerPool(const ProducerPool&) = delete;
  ProducerPool& operator=(const ProducerPool&) = delete;

  // Runs `task` on a pool thread; false (and `task` dropped unrun) when max_threads tasks are
  // already accepted and not finished.
  bool TrySchedule(std::function<void()> task);

  // Tasks accepted and not finished; threads started so far.
  int pending() const;
  int threads() const;

 private:
  void Loop();

  const int max_threads_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;  // queued + running
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_PRODUCER_POOL_H_
