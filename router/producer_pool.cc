#include "router/producer_pool.h"

#include <utility>

namespace expertmesh::router {

ProducerPool::~ProducerPool() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    threads = std::move(threads_);
  }
  for (std::thread& t : threads) t.join();
}

bool ProducerPool::TrySchedule(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stop_ || accepted_ >= max_threads_) return false;
  ++accepted_;
  queue_.push_back(std::move(task));
  // Every queued task beyond the idle threads gets a thread of its own, so a task never waits
  // behind another. A new thread counts as idle from here on, so threads = idle + running
  // <= accepted_ <= max_threads_.
  if (idle_ < static_cast<int>(queue_.size())) {
    ++idle_;
    threads_.emplace_back([this] { Loop(); });
  }
  return true;
}

int ProducerPool::pending() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

int ProducerPool::threads() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size());
}

void ProducerPool::Loop() {
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

}  // namespace expertmesh::router
