// The leader's rendezvous store over gRPC: set/get, waiting, bounded waits naming the key.
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/comm/rendezvous_client.h"
#include "worker/comm/rendezvous_server.h"

namespace expertmesh::comm {
namespace {

class RendezvousTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RendezvousServer>> server =
        RendezvousServer::Start("127.0.0.1", 0);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    client_ = std::make_unique<RendezvousClient>(Target(server_->port()), absl::Seconds(5));
  }
  static std::string Target(int port) { return "127.0.0.1:" + std::to_string(port); }

  std::unique_ptr<RendezvousServer> server_;
  std::unique_ptr<RendezvousClient> client_;
};

TEST_F(RendezvousTest, SetThenGetAndOverwrite) {
  ASSERT_TRUE(client_->Set("nccl/unique_id", std::string("\0\1\2binary", 9)).ok());
  absl::StatusOr<std::string> v = client_->Get("nccl/unique_id", absl::ZeroDuration());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, std::string("\0\1\2binary", 9));
  ASSERT_TRUE(client_->Set("nccl/unique_id", "second").ok());
  EXPECT_EQ(*client_->Get("nccl/unique_id", absl::ZeroDuration()), "second");
}

TEST_F(RendezvousTest, MissingKeyWithoutWaitIsNotFound) {
  absl::StatusOr<std::string> v = client_->Get("absent", absl::ZeroDuration());
  EXPECT_TRUE(absl::IsNotFound(v.status())) << v.status();
}

TEST_F(RendezvousTest, BoundedWaitNamesTheKey) {
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> v = client_->Get("gloo/3", absl::Milliseconds(300));
  EXPECT_TRUE(absl::IsDeadlineExceeded(v.status())) << v.status();
  EXPECT_THAT(std::string(v.status().message()), ::testing::HasSubstr("'gloo/3'"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_TRUE(absl::IsDeadlineExceeded(client_->Wait({"a", "b"}, absl::Milliseconds(100))));
}

TEST_F(RendezvousTest, WaitingGetReturnsOnceSet) {
  absl::StatusOr<std::string> got;
  std::thread waiter([&] { got = client_->Get("late", absl::Seconds(30)); });
  RendezvousClient other(Target(server_->port()), absl::Seconds(5));
  ASSERT_TRUE(other.Set("late", "value").ok());
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "value");
  EXPECT_TRUE(client_->Wait({"late"}, absl::Seconds(1)).ok());
}

TEST_F(RendezvousTest, UnreachableLeaderIsDeadlineExceeded) {
  int port = server_->port();
  server_.reset();  // nobody listens there now
  RendezvousClient client(Target(port), absl::Milliseconds(300));
  absl::Status s = client.Set("k", "v");
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("unreachable"));
}

TEST_F(RendezvousTest, PortInUseIsUnavailable) {
  absl::StatusOr<std::unique_ptr<RendezvousServer>> second =
      RendezvousServer::Start("127.0.0.1", server_->port());
  EXPECT_TRUE(absl::IsUnavailable(second.status())) << second.status();
  EXPECT_TRUE(absl::IsInvalidArgument(RendezvousServer::Start("127.0.0.1", 70000).status()));
}

}  // namespace
}  // namespace expertmesh::comm
