#include "router/http/bounded_executor.h"

#include <utility>

namespace expertmesh::router::http {

BoundedExecutor::BoundedExecutor(int threads, int max_queued)
    : max_queued_(static_cast<size_t>(max_queued)) {
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

BoundedExecutor::~BoundedExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

bool BoundedExecutor::TrySubmit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  // Tasks a free thread will take at once never count against the queue cap.
  const size_t free_threads = threads_.size() - static_cast<size_t>(busy_);
  if (stopping_ || queue_.size() >= max_queued_ + free_threads) return false;
  queue_.push_back(std::move(task));
  return true;
}

int BoundedExecutor::busy() const {
  absl::MutexLock lock(&mu_);
  return busy_;
}

int BoundedExecutor::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

void BoundedExecutor::Work() {
  mu_.Lock();
  while (true) {
    mu_.Await(absl::Condition(
        +[](BoundedExecutor* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return !self->queue_.empty() || self->stopping_;
        },
        this));
    if (queue_.empty()) break;  // stopping, nothing left
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    ++busy_;
    mu_.Unlock();
    task();
    task = nullptr;  // destroy captures outside the lock
    mu_.Lock();
    --busy_;
  }
  mu_.Unlock();
}

}  // namespace expertmesh::router::http
