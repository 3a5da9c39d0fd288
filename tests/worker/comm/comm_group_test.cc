// Issue 15, finding 5: a group's rendezvous listens on the configured host only, asks every
// rank for the group's token, and is closed once the group has formed.
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/listening_sockets.h"
#include "worker/comm/comm_group.h"
#include "worker/comm/rendezvous_client.h"

namespace expertmesh::comm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

struct TwoRanks {
  absl::StatusOr<std::unique_ptr<CommGroup>> leader, follower;
  int port = 0;
  std::set<std::string> listening_while_forming;  // the leader's port, seen from its callback
};

// Rank 0 and rank 1 of a group of two, in two threads; `tokens` are the ranks' tokens.
// JoinOptions::listen_host is left at its default.
TwoRanks JoinTwo(const std::string& leader_token, const std::string& follower_token,
                 absl::Duration timeout) {
  TwoRanks out;
  std::promise<int> port_promise;
  std::shared_future<int> port = port_promise.get_future().share();
  auto options = [&](int rank, const std::string& token) {
    JoinOptions o;
    o.group = GroupConfig{.rank = rank,
                          .world_size = 2,
                          .leader_host = "127.0.0.1",
                          .leader_port = rank == 0 ? 0 : port.get(),
                          .local_host = "127.0.0.1"};
    if (!token.empty()) o.token = *InternalToken::FromString(token);
    o.timeout = timeout;
    return o;
  };
  std::thread leader([&] {
    JoinOptions o = options(0, leader_token);
    bool sent = false;
    o.on_leader_listening = [&](int p) {
      out.port = p;
      out.listening_while_forming = expertmesh::testing::ListeningAddresses(p);
      sent = true;
      port_promise.set_value(p);
    };
    out.leader = CommGroup::Join(o);
    if (!sent) port_promise.set_value(-1);
  });
  if (port.get() > 0) out.follower = CommGroup::Join(options(1, follower_token));
  leader.join();
  return out;
}

TEST(CommGroupTest, RendezvousListensOnLoopbackAndClosesOnceFormed) {
  TwoRanks group = JoinTwo("group-token", "group-token", absl::Seconds(30));
  ASSERT_TRUE(group.leader.ok()) << group.leader.status();
  ASSERT_TRUE(group.follower.ok()) << group.follower.status();
  EXPECT_THAT(group.listening_while_forming, ElementsAre("127.0.0.1"));
  EXPECT_EQ((*group.leader)->rendezvous_port(), group.port);
  // Formed: nothing listens on the rendezvous port any more, so nobody can register into the
  // group or read its addresses.
  EXPECT_THAT(expertmesh::testing::ListeningAddresses(group.port), IsEmpty());
  RendezvousClient late("127.0.0.1:" + std::to_string(group.port), absl::Milliseconds(300),
                        *InternalToken::FromString("group-token"));
  EXPECT_FALSE(late.Set("gloo/1", "attacker:1").ok());
  // The group itself works without the store.
  std::thread follower([&] { EXPECT_TRUE((*group.follower)->comm().Barrier().ok()); });
  EXPECT_TRUE((*group.leader)->comm().Barrier().ok());
  follower.join();
}

TEST(CommGroupTest, ARankWithAnotherTokenCannotJoin) {
  TwoRanks group = JoinTwo("group-token", "other-token", absl::Seconds(3));
  ASSERT_GT(group.port, 0);
  EXPECT_TRUE(absl::IsUnauthenticated(group.follower.status())) << group.follower.status();
  EXPECT_FALSE(group.leader.ok());
}

TEST(CommGroupTest, ARankWithoutATokenCannotJoinAGroupWithOne) {
  TwoRanks group = JoinTwo("group-token", "", absl::Seconds(3));
  ASSERT_GT(group.port, 0);
  EXPECT_TRUE(absl::IsUnauthenticated(group.follower.status())) << group.follower.status();
  EXPECT_FALSE(group.leader.ok());
}

}  // namespace
}  // namespace expertmesh::comm
