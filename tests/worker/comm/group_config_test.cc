// Resolving rank, world size and leader from flags > EXPERTMESH_* > LWS_*.
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/comm/group_config.h"

namespace expertmesh::comm {
namespace {

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(GroupConfigTest, NothingSetIsAGroupOfOne) {
  absl::StatusOr<GroupConfig> c = ResolveGroupConfig({}, Env({}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->world_size, 1);
  EXPECT_EQ(c->rank, 0);
}

TEST(GroupConfigTest, ExpertmeshEnvironment) {
  absl::StatusOr<GroupConfig> c =
      ResolveGroupConfig({}, Env({{"EXPERTMESH_LEADER", "10.0.0.5:4567"},
                                  {"EXPERTMESH_RANK", "2"},
                                  {"EXPERTMESH_WORLD_SIZE", "4"},
                                  {"EXPERTMESH_HOST", "10.0.0.7"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 2);
  EXPECT_EQ(c->world_size, 4);
  EXPECT_EQ(c->leader_host, "10.0.0.5");
  EXPECT_EQ(c->leader_port, 4567);
  EXPECT_EQ(c->local_host, "10.0.0.7");
  EXPECT_THAT(c->source, ::testing::HasSubstr("EXPERTMESH_RANK"));
}

TEST(GroupConfigTest, LeaderWorkerSetEnvironmentWithDefaultPort) {
  absl::StatusOr<GroupConfig> c =
      ResolveGroupConfig({}, Env({{"LWS_LEADER_ADDRESS", "grp-0.grp.default"},
                                  {"LWS_GROUP_SIZE", "2"},
                                  {"LWS_WORKER_INDEX", "1"},
                                  {"POD_IP", "10.1.2.3"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 1);
  EXPECT_EQ(c->world_size, 2);
  EXPECT_EQ(c->leader_host, "grp-0.grp.default");
  EXPECT_EQ(c->leader_port, kDefaultRendezvousPort);
  EXPECT_EQ(c->local_host, "10.1.2.3");
}

// Two pods of 8 GPUs, one rank per GPU: pod 1's local rank 3 is rank 11 of 16.
TEST(GroupConfigTest, SeveralRanksPerPod) {
  absl::StatusOr<GroupConfig> c =
      ResolveGroupConfig({}, Env({{"LWS_LEADER_ADDRESS", "grp-0.grp.default"},
                                  {"LWS_GROUP_SIZE", "2"},
                                  {"LWS_WORKER_INDEX", "1"},
                                  {"POD_IP", "10.1.2.3"},
                                  {"EXPERTMESH_RANKS_PER_POD", "8"},
                                  {"EXPERTMESH_LOCAL_RANK", "3"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 11);
  EXPECT_EQ(c->world_size, 16);
  EXPECT_THAT(c->source, ::testing::HasSubstr("local rank 3 of 8"));
  // One pod: its local ranks are the whole group.
  c = ResolveGroupConfig({.leader = "127.0.0.1:4000", .ranks_per_pod = 2, .local_rank = 1},
                         Env({}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 1);
  EXPECT_EQ(c->world_size, 2);
  EXPECT_THAT(ResolveGroupConfig({.ranks_per_pod = 2}, Env({})).status().message(),
              ::testing::HasSubstr("needs EXPERTMESH_LOCAL_RANK"));
  EXPECT_THAT(ResolveGroupConfig({.ranks_per_pod = 2, .local_rank = 2}, Env({})).status().message(),
              ::testing::HasSubstr("--local-rank"));
}

TEST(GroupConfigTest, PrecedenceFlagsThenExpertmeshThenLws) {
  auto env = Env({{"EXPERTMESH_RANK", "1"},
                  {"LWS_WORKER_INDEX", "3"},
                  {"LWS_GROUP_SIZE", "4"},
                  {"EXPERTMESH_LEADER", "a:1"},
                  {"LWS_LEADER_ADDRESS", "b"},
                  {"EXPERTMESH_LEADER_PORT", "99"}});
  absl::StatusOr<GroupConfig> c = ResolveGroupConfig({}, env);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 1);
  EXPECT_EQ(c->world_size, 4);
  EXPECT_EQ(c->leader_host, "a");
  EXPECT_EQ(c->leader_port, 1);
  GroupFlags flags{.leader = "[::1]:7", .rank = 2, .world_size = 3};
  c = ResolveGroupConfig(flags, env);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 2);
  EXPECT_EQ(c->world_size, 3);
  EXPECT_EQ(c->leader_host, "::1");
  EXPECT_EQ(c->leader_port, 7);
  EXPECT_EQ(c->local_host, "127.0.0.1");  // loopback leader: peers are local too
  // LWS address takes EXPERTMESH_LEADER_PORT when EXPERTMESH_LEADER is absent.
  c = ResolveGroupConfig({}, Env({{"LWS_LEADER_ADDRESS", "b"},
                                  {"LWS_GROUP_SIZE", "2"},
                                  {"LWS_WORKER_INDEX", "1"},
                                  {"EXPERTMESH_LEADER_PORT", "99"},
                                  {"EXPERTMESH_HOST", "h"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->leader_port, 99);
}

TEST(GroupConfigTest, BadValuesNameTheirSource) {
  struct Case {
    std::map<std::string, std::string> env;
    std::string message;
  };
  std::vector<Case> cases = {
      {{{"EXPERTMESH_RANK", "x"}}, "EXPERTMESH_RANK='x'"},
      {{{"EXPERTMESH_WORLD_SIZE", "2"}, {"EXPERTMESH_RANK", "2"}, {"EXPERTMESH_LEADER", "h:1"}},
       "EXPERTMESH_RANK='2'"},
      {{{"LWS_GROUP_SIZE", "0"}}, "LWS_GROUP_SIZE='0'"},
      {{{"EXPERTMESH_WORLD_SIZE", "2"}}, "needs a leader"},
      {{{"EXPERTMESH_WORLD_SIZE", "2"}, {"EXPERTMESH_LEADER", "nohostport"}}, "not host:port"},
      {{{"EXPERTMESH_WORLD_SIZE", "2"}, {"EXPERTMESH_LEADER", "h:99999"}},
       "EXPERTMESH_LEADER port"},
      {{{"EXPERTMESH_WORLD_SIZE", "2"}, {"EXPERTMESH_RANK", "1"}, {"EXPERTMESH_LEADER", "h:0"}},
       "only the leader"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<GroupConfig> got = ResolveGroupConfig({}, Env(c.env));
    EXPECT_TRUE(absl::IsInvalidArgument(got.status())) << c.message << ": " << got.status();
    EXPECT_THAT(std::string(got.status().message()), ::testing::HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace expertmesh::comm
