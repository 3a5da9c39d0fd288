// The leader's rendezvous store over gRPC: set/get, waiting, bounded waits naming the key;
// a key set once (no second registration of a rank), the group's token on every call, the
// configured listen address (issue 15, finding 5).
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/listening_sockets.h"
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

TEST_F(RendezvousTest, SetThenGet) {
  ASSERT_TRUE(client_->Set("gloo/0", std::string("\0\1\2binary", 9)).ok());
  absl::StatusOr<std::string> v = client_->Get("gloo/0", absl::ZeroDuration());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, std::string("\0\1\2binary", 9));
}

// A rank's address, once registered, cannot be replaced: a second registration (another
// process claiming the rank) is refused and the first address stays.
TEST_F(RendezvousTest, SecondRegistrationOfARankIsRefused) {
  ASSERT_TRUE(client_->Set("gloo/1", "10.0.0.2:4000").ok());
  RendezvousClient intruder(Target(server_->port()), absl::Seconds(5));
  absl::Status second = intruder.Set("gloo/1", "10.6.6.6:4000");
  EXPECT_TRUE(absl::IsAlreadyExists(second)) << second;
  EXPECT_THAT(std::string(second.message()), ::testing::HasSubstr("'gloo/1'"));
  EXPECT_TRUE(absl::IsAlreadyExists(client_->Set("gloo/1", "10.0.0.2:4000")));
  EXPECT_EQ(*client_->Get("gloo/1", absl::ZeroDuration()), "10.0.0.2:4000");
}

TEST_F(RendezvousTest, ListensOnTheGivenHostOnly) {
  EXPECT_THAT(expertmesh::testing::ListeningAddresses(server_->port()),
              ::testing::ElementsAre("127.0.0.1"));
}

// With a token, every call must carry it: a registration or lookup without it, or with
// another, is refused and changes nothing.
TEST(RendezvousTokenTest, CallsWithoutTheTokenAreRefused) {
  absl::StatusOr<std::unique_ptr<RendezvousServer>> server =
      RendezvousServer::Start("127.0.0.1", 0, *InternalToken::FromString("group-token"));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = "127.0.0.1:" + std::to_string((*server)->port());
  RendezvousClient none(target, absl::Seconds(5));
  RendezvousClient wrong(target, absl::Seconds(5), *InternalToken::FromString("other-token"));
  RendezvousClient right(target, absl::Seconds(5), *InternalToken::FromString("group-token"));
  for (RendezvousClient* c : {&none, &wrong}) {
    absl::Status set = c->Set("gloo/1", "10.6.6.6:4000");
    EXPECT_TRUE(absl::IsUnauthenticated(set)) << set;
    EXPECT_TRUE(absl::IsUnauthenticated(c->Get("gloo/0", absl::ZeroDuration()).status()));
  }
  EXPECT_TRUE(absl::IsNotFound(right.Get("gloo/1", absl::ZeroDuration()).status()));
  ASSERT_TRUE(right.Set("gloo/0", "10.0.0.1:4000").ok());
  EXPECT_TRUE(absl::IsUnauthenticated(none.Get("gloo/0", absl::ZeroDuration()).status()));
  EXPECT_EQ(*right.Get("gloo/0", absl::ZeroDuration()), "10.0.0.1:4000");
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
