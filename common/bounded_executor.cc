#include "common/bounded_executor.h"

#include <utility>

namespace expertmesh {

BoundedExecutor::~BoundedExecutor() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    threads = std::move(threads_);
  }
  for (std::thread& t : threads) t.join();
}

bool BoundedExecutor::TrySubmit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stop_ || accepted_ >= max_threads_ + max_queued_) return false;
  ++accepted_;
  queue_.push_back(std::move(task));
  // A queued task beyond the idle threads gets a new thread while there may be more. A new
  // thread counts as idle from here on, so threads = idle + running <= max_threads_.
  if (idle_ < static_cast<int>(queue_.size()) && static_cast<int>(threads_.size()) < max_threads_) {
    ++idle_;
    threads_.emplace_back([this] { Loop(); });
  }
  return true;
}

int BoundedExecutor::pending() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

int BoundedExecutor::threads() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size());
}

void BoundedExecutor::Loop() {
  mu_.Lock();
  while (true) {  // idle_ counts this thread here
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
    mu_.Await(absl::Condition(&ready));
    if (queue_.empty()) break;  // stopping with nothing left to run
    --idle_;
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    task();
    task = nullptr;  // what the task captured dies outside the lock too
    mu_.Lock();
    --accepted_;
    ++idle_;
  }
  mu_.Unlock();
}

}  // namespace expertmesh
