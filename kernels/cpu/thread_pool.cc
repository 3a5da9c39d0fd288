#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace expertmesh::kernels::cpu {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long an idle worker spins before sleeping: long enough to cover the gap between two ops
// of a decode step, short enough not to steal a core from other processes.
constexpr auto kSpin = std::chrono::microseconds(200);

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);  // published by Publish's generation_ bump
  Publish();
  for (std::thread& t : workers_) t.join();
}

// The wake-up handshake, without a lock while no worker sleeps. Sleep() increments sleepers_
// and then re-reads generation_; Publish() bumps generation_ and then reads sleepers_. All four
// are seq_cst, so they are in one total order and at least one side sees the other's write:
// either the worker sees the new generation and does not wait, or Publish sees the sleeper and
// signals. The sleeper increments sleepers_ holding mu_ and keeps holding it until Wait releases
// it, so Publish's Lock (after it saw the sleeper) cannot slip in between the sleeper's check
// and its Wait: the signal cannot be lost.
void ThreadPool::Publish() {
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  { absl::MutexLock lock(&mu_); }
  wake_.SignalAll();
}

void ThreadPool::Sleep(uint64_t seen) {
  absl::MutexLock lock(&mu_);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  while (generation_.load(std::memory_order_seq_cst) == seen) wake_.Wait(&mu_);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

void ThreadPool::RunChunks() {
  for (;;) {
    const int64_t begin = next_.fetch_add(grain_, std::memory_order_relaxed);
    if (begin >= n_) return;
    (*fn_)(begin, std::min(n_, begin + grain_));
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (num_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  next_.store(0, std::memory_order_relaxed);
  active_.store(num_threads_ - 1, std::memory_order_relaxed);
  Publish();  // the job fields above are released by its generation_ bump
  RunChunks();
  // Wait for the workers still finishing a chunk; yield after a while so that on an
  // oversubscribed machine a descheduled worker can get the core back.
  for (int spins = 0; active_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < 4096) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  fn_ = nullptr;
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  for (;;) {
    // Spin, then sleep, until the generation changes.
    const auto spin_until = std::chrono::steady_clock::now() + kSpin;
    int polls = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      CpuRelax();
      if (++polls % 256 == 0 && std::chrono::steady_clock::now() > spin_until) {
        Sleep(seen);
        break;
      }
    }
    seen = generation_.load(std::memory_order_acquire);
    // Set before the destructor's bump that this worker just saw; false for every job bump
    // (the destructor runs only after the last ParallelFor, which waits for every worker).
    if (stop_.load(std::memory_order_relaxed)) return;
    RunChunks();
    active_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace expertmesh::kernels::cpu
