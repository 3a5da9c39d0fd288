#include "router/routing_policy.h"

#include <numeric>

#include "gtest/gtest.h"
#include "model/plan/kv_block_hash.h"
#include "worker/kv/kv_cache_manager.h"

namespace expertmesh::router {
namespace {

// The block hash as model/plan/kv_block_hash.h documents it, written out independently: the
// router's prefix affinity only works if routers and workers agree on these values.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
std::vector<uint64_t> DocumentedHashes(const std::vector<int32_t>& tokens, size_t block) {
  std::vector<uint64_t> out;
  uint64_t parent = 0x6a09e667f3bcc908ULL;
  for (size_t start = 0; start + block <= tokens.size(); start += block) {
    uint64_t h = parent ^ (0x9e3779b97f4a7c15ULL * (block + 1));
    for (size_t i = start; i < start + block; ++i) h = Mix(h ^ static_cast<uint32_t>(tokens[i]));
    parent = Mix(h + 0x632be59bd9b4e019ULL);
    out.push_back(parent);
  }
  return out;
}

std::vector<int32_t> Tokens(int n, int first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(PrefixHash, RouterHashesEqualTheWorkerKvHashes) {
  for (int len : {0, 15, 16, 17, 64, 100}) {
    const std::vector<int32_t> t = Tokens(len, 7);
    EXPECT_EQ(model::HashFullKvBlocks(t, 16), DocumentedHashes(t, 16)) << len;
  }
}

// The contract between router and worker: after a worker's prefix cache (worker/kv) has run a
// prompt, it reports the hashes of exactly the blocks the router looks for when it routes that
// prompt (router/worker_pool.cc hashes it with the same model/plan function).
TEST(PrefixHash, WorkerCacheReportsTheBlocksTheRouterLooksFor) {
  for (int block : {1, 4, 16}) {
    for (int len : {1, 15, 16, 17, 64, 100}) {
      absl::StatusOr<kv::KvCacheManager> worker = kv::KvCacheManager::Create(
          {.num_blocks = 256, .block_size = block, .enable_prefix_caching = true});
      ASSERT_TRUE(worker.ok()) << worker.status();
      const std::vector<int32_t> prompt = Tokens(len, 3);
      ASSERT_TRUE(worker->Commit(worker->PlanAllocation(1, len)).ok());
      worker->MarkComputed(1, prompt, len);
      const std::vector<uint64_t> reported = worker->CachedPrefixHashes(1000);
      const absl::flat_hash_set<uint64_t> cached(reported.begin(), reported.end());
      const std::vector<uint64_t> routed = model::HashFullKvBlocks(prompt, block);
      EXPECT_EQ(cached.size(), static_cast<size_t>(len / block)) << block << " " << len;
      EXPECT_EQ(MatchedPrefixBlocks(routed, cached), static_cast<size_t>(len / block))
          << block << " " << len;
    }
  }
}

TEST(PrefixHash, MatchedBlocksCountsTheLeadingRun) {
  const std::vector<uint64_t> h = model::HashFullKvBlocks(Tokens(64, 1), 16);
  absl::flat_hash_set<uint64_t> cached = {h[0], h[1]};
  EXPECT_EQ(MatchedPrefixBlocks(h, cached), 2u);
  EXPECT_EQ(MatchedPrefixBlocks(h, {}), 0u);
  // A different first block changes every later hash (chaining): no match.
  std::vector<int32_t> other = Tokens(64, 1);
  other[0] = 999;
  EXPECT_EQ(MatchedPrefixBlocks(model::HashFullKvBlocks(other, 16), cached), 0u);
}

class ChooseGroupTest : public ::testing::Test {
 protected:
  GroupView Group(uint32_t queued, uint32_t running, uint32_t free = 100) {
    GroupView g;
    g.healthy = true;
    g.queued = queued;
    g.running = running;
    g.free_kv_blocks = free;
    g.total_kv_blocks = 100;
    g.kv_block_size = 16;
    return g;
  }
  absl::StatusOr<RoutingDecision> Choose(const std::vector<GroupView>& groups,
                                         RoutingOptions options = {}, uint64_t rr = 0,
                                         std::vector<bool> excluded = {}) {
    excluded.resize(groups.size(), false);
    std::unique_ptr<bool[]> ex(new bool[groups.size()]);
    for (size_t i = 0; i < groups.size(); ++i) ex[i] = excluded[i];
    auto fn = [this](uint32_t bs) -> std::span<const uint64_t> {
      hashes_ = model::HashFullKvBlocks(prompt_, static_cast<int>(bs));
      return hashes_;
    };
    return ChooseGroup(groups, std::span<const bool>(ex.get(), groups.size()), fn, options, rr);
  }
  std::vector<int32_t> prompt_ = Tokens(48, 100);
  std::vector<uint64_t> hashes_;
};

TEST_F(ChooseGroupTest, LeastLoadedWins) {
  EXPECT_EQ(Choose({Group(5, 4), Group(0, 1), Group(2, 2)})->group, 1u);
  // KV pressure counts too.
  EXPECT_EQ(Choose({Group(0, 2, 5), Group(0, 2, 95)})->group, 1u);
}

TEST_F(ChooseGroupTest, PrefixAffinityBeatsSlightlyLowerLoad) {
  const auto hashes = model::HashFullKvBlocks(prompt_, 16);
  absl::flat_hash_set<uint64_t> cached(hashes.begin(), hashes.begin() + 2);
  std::vector<GroupView> groups = {Group(0, 0), Group(1, 2)};
  groups[1].cached_prefixes = &cached;
  absl::StatusOr<RoutingDecision> d = Choose(groups);
  EXPECT_EQ(d->group, 1u);
  EXPECT_EQ(d->matched_blocks, 2u);
  // The baseline policies ignore it.
  RoutingOptions least;
  least.mode = RoutingMode::kLeastLoaded;
  EXPECT_EQ(Choose(groups, least)->group, 0u);
}

TEST_F(ChooseGroupTest, AffinityGivesWayWhenTheCachedGroupIsOverloadedOrFarBusier) {
  const auto hashes = model::HashFullKvBlocks(prompt_, 16);
  absl::flat_hash_set<uint64_t> cached(hashes.begin(), hashes.end());
  RoutingOptions options;
  options.max_group_queue = 4;
  std::vector<GroupView> groups = {Group(0, 0), Group(4, 2)};
  groups[1].cached_prefixes = &cached;
  EXPECT_EQ(Choose(groups, options)->group, 0u);  // overloaded
  groups[1] = Group(0, 20);
  groups[1].cached_prefixes = &cached;
  EXPECT_EQ(Choose(groups, options)->group, 0u);  // beyond affinity_slack
}

TEST_F(ChooseGroupTest, LongestCachedPrefixWins) {
  const auto hashes = model::HashFullKvBlocks(prompt_, 16);
  absl::flat_hash_set<uint64_t> one(hashes.begin(), hashes.begin() + 1);
  absl::flat_hash_set<uint64_t> three(hashes.begin(), hashes.end());
  std::vector<GroupView> groups = {Group(0, 0), Group(0, 0), Group(0, 0)};
  groups[0].cached_prefixes = &one;
  groups[2].cached_prefixes = &three;
  for (uint64_t rr = 0; rr < 3; ++rr) EXPECT_EQ(Choose(groups, {}, rr)->group, 2u);
}

TEST_F(ChooseGroupTest, UnhealthyAndExcludedGroupsAreSkipped) {
  std::vector<GroupView> groups = {Group(0, 0), Group(3, 3)};
  groups[0].healthy = false;
  EXPECT_EQ(Choose(groups)->group, 1u);
  EXPECT_TRUE(absl::IsUnavailable(Choose(groups, {}, 0, {false, true}).status()));
  groups[1].healthy = false;
  EXPECT_TRUE(absl::IsUnavailable(Choose(groups).status()));
}

TEST_F(ChooseGroupTest, AllOverloadedIsResourceExhausted) {
  RoutingOptions options;
  options.max_group_queue = 2;
  std::vector<GroupView> groups = {Group(2, 0), Group(0, 0, 1)};
  EXPECT_TRUE(absl::IsResourceExhausted(Choose(groups, options).status()));
  // Router-side in-flight counts even before the next report.
  groups = {Group(0, 0)};
  groups[0].router_inflight = 2;
  EXPECT_TRUE(absl::IsResourceExhausted(Choose(groups, options).status()));
}

TEST_F(ChooseGroupTest, RoundRobinRotatesAndEqualLoadSpreads) {
  RoutingOptions rr;
  rr.mode = RoutingMode::kRoundRobin;
  std::vector<GroupView> groups = {Group(9, 9), Group(0, 0), Group(0, 0)};
  EXPECT_EQ(Choose(groups, rr, 0)->group, 0u);
  EXPECT_EQ(Choose(groups, rr, 1)->group, 1u);
  EXPECT_EQ(Choose(groups, rr, 2)->group, 2u);
  std::vector<GroupView> equal = {Group(0, 0), Group(0, 0)};
  EXPECT_NE(Choose(equal, {}, 0)->group, Choose(equal, {}, 1)->group);
}

TEST(RoutingMode, ParsesNames) {
  EXPECT_EQ(*ParseRoutingMode("round-robin"), RoutingMode::kRoundRobin);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseRoutingMode("random").status()));
}

}  // namespace
}  // namespace expertmesh::router
