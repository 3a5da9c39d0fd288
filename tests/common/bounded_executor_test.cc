#include "common/bounded_executor.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace expertmesh {
namespace {

TEST(BoundedExecutor, NeverMoreThreadsThanItsBound) {
  BoundedExecutor pool(3, 0);
  absl::Notification release;
  std::atomic<int> ran{0};
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    accepted += pool.TrySubmit([&] {
      release.WaitForNotification();
      ran.fetch_add(1);
    });
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_LE(pool.threads(), 3);
  release.Notify();
  while (pool.pending() > 0) std::this_thread::yield();
  EXPECT_EQ(ran.load(), 3);
  // Threads are reused, not added.
  for (int i = 0; i < 20; ++i) {
    while (!pool.TrySubmit([&] { ran.fetch_add(1); })) std::this_thread::yield();
  }
  while (pool.pending() > 0) std::this_thread::yield();
  EXPECT_EQ(ran.load(), 23);
  EXPECT_LE(pool.threads(), 3);
}

TEST(BoundedExecutor, QueuesUpToItsCapThenRefuses) {
  BoundedExecutor pool(2, 3);
  absl::Notification release;
  std::atomic<int> ran{0};
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    accepted += pool.TrySubmit([&] {
      release.WaitForNotification();
      ran.fetch_add(1);
    });
  }
  EXPECT_EQ(accepted, 5);  // two running, three waiting
  EXPECT_EQ(pool.threads(), 2);
  release.Notify();
  while (pool.pending() > 0) std::this_thread::yield();
  EXPECT_EQ(ran.load(), 5);
}

TEST(BoundedExecutor, StartsNoThreadUntilThereIsWork) {
  BoundedExecutor pool(100, 0);
  EXPECT_EQ(pool.threads(), 0);
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.TrySubmit([&] { ran.fetch_add(1); }));
  while (pool.pending() > 0) std::this_thread::yield();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(pool.threads(), 1);
}

}  // namespace
}  // namespace expertmesh
