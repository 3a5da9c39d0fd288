// A small fork-join thread pool for the CPU kernels.
//
// Why our own pool and not OpenMP: OpenBLAS (pthreads) and oneDNN (OpenMP) bring their own
// runtimes; mixing OpenMP regions with them oversubscribes 2 cores, and GCC's libgomp spins
// after every region. This pool owns the cores: BLAS calls are made single-threaded from inside
// its tasks. Its workers spin briefly after a job (decode launches ~10 jobs per layer, a few
// microseconds apart) and then sleep on a condition variable, so an idle engine uses no CPU.
//
// Results never depend on the scheduling: every task writes disjoint outputs and computes them
// in a fixed order, so dynamic chunk claiming keeps outputs bit-identical run to run.
//
// Thread safety: ParallelFor may be called from one thread at a time (the backend's caller).
#ifndef EXPERTMESH_KERNELS_CPU_THREAD_POOL_H_
#define EXPERTMESH_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace expertmesh::kernels::cpu {

class ThreadPool {
 public:
  // num_threads counts the calling thread: 1 runs everything inline.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over [0, n) in chunks of at most `grain` items, claimed dynamically by
  // the caller and the workers; returns when all chunks are done. With one thread, or n <= grain,
  // the whole range is a single call. fn must not throw.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void RunChunks();
  // Bumps generation_ and wakes the sleeping workers, if any.
  void Publish() ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps until generation_ differs from `seen`.
  void Sleep(uint64_t seen) ABSL_LOCKS_EXCLUDED(mu_);

  const int num_threads_;
  std::vector<std::thread> workers_;

  // Taken only to fall asleep and to wake sleepers, never while the workers spin: then a job is
  // handed out through atomics alone, and a worker checks stop_ without a lock. (Debian's abseil
  // is built without NDEBUG, deadlock detection on: an uncontended absl::Mutex Lock+Unlock costs
  // ~55 ns there against ~6 ns for std::mutex.) It guards no data, only makes a sleeper's "check
  // generation_, then Wait" atomic with respect to Publish's signal (see Publish).
  absl::Mutex mu_;
  absl::CondVar wake_;
  std::atomic<int> sleepers_{0};         // workers inside Sleep()
  std::atomic<uint64_t> generation_{0};  // bumped per job; workers wait for a change
  std::atomic<bool> stop_{false};        // set by the destructor before its generation_ bump

  // The current job: written by ParallelFor before it bumps generation_ and read by the workers
  // after they see the bump (release/acquire on generation_), so not guarded by mu_.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};  // workers still inside the current job
};

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_THREAD_POOL_H_
