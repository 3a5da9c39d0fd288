// The CPU backend's fork-join pool: every index exactly once, across repeated jobs, any grain.
#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace expertmesh::kernels::cpu {
namespace {

TEST(ThreadPool, CoversEveryIndexOnceForManyJobs) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 16, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
          if (threads > 1 && n > grain) {
            EXPECT_LE(e - b, grain);
          }
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[i].load(), 1) << "threads " << threads << " n " << n << " i " << i;
        }
      }
    }
  }
}

TEST(ThreadPool, UsesMoreThanOneThreadForLargeJobs) {
  ThreadPool pool(2);
  std::atomic<int> chunks{0};
  std::vector<std::thread::id> ids(256);
  // Enough work per chunk that the worker wakes up and takes some.
  pool.ParallelFor(256, 1, [&](int64_t b, int64_t e) {
    volatile double x = 0;
    for (int i = 0; i < 200000; ++i) x = x + i;
    ids[b] = std::this_thread::get_id();
    chunks.fetch_add(1);
  });
  EXPECT_EQ(chunks.load(), 256);
  bool other = false;
  for (const auto& id : ids) other |= id != std::this_thread::get_id();
  EXPECT_TRUE(other);
}

}  // namespace
}  // namespace expertmesh::kernels::cpu
