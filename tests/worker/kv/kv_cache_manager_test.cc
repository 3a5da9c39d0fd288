#include "worker/kv/kv_cache_manager.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/plan/kv_block_hash.h"

namespace expertmesh::kv {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<int32_t> Range(int32_t begin, int32_t count) {
  std::vector<int32_t> v(count);
  std::iota(v.begin(), v.end(), begin);
  return v;
}

class KvCacheManagerTest : public ::testing::Test {
 protected:
  void Make(int32_t blocks, int32_t block_size = 4, bool prefix = true) {
    auto m = KvCacheManager::Create(
        {.num_blocks = blocks, .block_size = block_size, .enable_prefix_caching = prefix});
    ASSERT_TRUE(m.ok()) << m.status();
    kv_.emplace(*std::move(m));
  }
  void Check() { ASSERT_TRUE(kv_->CheckInvariants().ok()) << kv_->CheckInvariants(); }
  // Admits `seq` with its whole prompt in one step (after any prefix hit) and marks it computed.
  std::vector<KvBlockCopy> Prefill(SeqId seq, const std::vector<int32_t>& prompt,
                                   uint64_t root = model::kRootBlockHash) {
    KvPrefixHit hit = kv_->FindCachedPrefix(prompt, root);
    KvAllocationPlan plan =
        kv_->PlanAllocation(seq, static_cast<int64_t>(prompt.size()) - hit.num_tokens, hit);
    EXPECT_TRUE(plan.fits);
    auto copies = kv_->Commit(plan);
    EXPECT_TRUE(copies.ok()) << copies.status();
    kv_->MarkComputed(seq, prompt, static_cast<int64_t>(prompt.size()));
    Check();
    return copies.ok() ? *copies : std::vector<KvBlockCopy>{};
  }
  std::vector<KvBlockCopy> Append(SeqId seq, int64_t n) {
    KvAllocationPlan plan = kv_->PlanAllocation(seq, n);
    EXPECT_TRUE(plan.fits);
    auto copies = kv_->Commit(plan);
    EXPECT_TRUE(copies.ok()) << copies.status();
    Check();
    return copies.ok() ? *copies : std::vector<KvBlockCopy>{};
  }

  std::optional<KvCacheManager> kv_;
};

TEST_F(KvCacheManagerTest, RejectsBadConfig) {
  EXPECT_EQ(KvCacheManager::Create({.num_blocks = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCacheManager::Create({.num_blocks = 4, .block_size = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KvCacheManagerTest, AllocatesBlockTablesAndFreesEverything) {
  Make(8);
  Prefill(1, Range(0, 10));  // 3 blocks
  EXPECT_THAT(kv_->block_table(1), ElementsAre(0, 1, 2));
  EXPECT_EQ(kv_->NumTokens(1), 10);
  Append(1, 2);  // fills block 2 exactly
  EXPECT_EQ(kv_->block_table(1).size(), 3u);
  Append(1, 1);
  EXPECT_EQ(kv_->block_table(1).size(), 4u);
  Prefill(2, Range(100, 4));
  EXPECT_EQ(kv_->NumFreeBlocks(), 3);
  kv_->Free(1);
  kv_->Free(2);
  kv_->Free(2);  // unknown: ignored
  Check();
  EXPECT_EQ(kv_->NumFreeBlocks(), kv_->num_blocks());
}

TEST_F(KvCacheManagerTest, PlanHasNoSideEffectsAndRefusesWhatDoesNotFit) {
  Make(4);
  Prefill(1, Range(0, 12));  // 3 of 4 blocks
  KvAllocationPlan big = kv_->PlanAllocation(2, 8);
  EXPECT_FALSE(big.fits);
  EXPECT_EQ(big.blocks_to_take, 2);
  EXPECT_EQ(kv_->NumFreeBlocks(), 1);
  EXPECT_FALSE(kv_->Contains(2));
  EXPECT_EQ(kv_->Commit(big).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(kv_->Contains(2));
  Check();
  // A plan made before another mutation is stale.
  KvAllocationPlan a = kv_->PlanAllocation(2, 4);
  KvAllocationPlan b = kv_->PlanAllocation(3, 4);
  ASSERT_TRUE(a.fits && b.fits);
  ASSERT_TRUE(kv_->Commit(a).ok());
  EXPECT_EQ(kv_->Commit(b).status().code(), absl::StatusCode::kFailedPrecondition);
  Check();
}

TEST_F(KvCacheManagerTest, PrefixHitSkipsCachedFullBlocksAndKeepsOneTokenToCompute) {
  Make(16);
  std::vector<int32_t> prompt = Range(0, 10);  // blocks [0..3] [4..7] partial [8, 9]
  Prefill(1, prompt);
  kv_->Free(1);
  Check();
  EXPECT_EQ(kv_->Stats().cached_blocks, 2);
  KvPrefixHit hit = kv_->FindCachedPrefix(prompt);
  EXPECT_EQ(hit.num_tokens, 8);
  EXPECT_THAT(hit.blocks, ElementsAre(0, 1));
  EXPECT_EQ(hit.hashes, model::HashFullKvBlocks(prompt, 4));
  // Exactly two full blocks: the last one is recomputed for its logits.
  EXPECT_EQ(kv_->FindCachedPrefix(Range(0, 8)).num_tokens, 4);
  // A different second block only hits the first.
  std::vector<int32_t> other = Range(0, 10);
  other[5] = 99;
  EXPECT_EQ(kv_->FindCachedPrefix(other).num_tokens, 4);
  // Adopting the hit references the cached blocks again.
  Prefill(2, prompt);
  EXPECT_THAT(kv_->block_table(2), ::testing::ElementsAre(0, 1, ::testing::_));
  Prefill(3, other);
  EXPECT_EQ(kv_->block_table(3)[0], 0);
  EXPECT_NE(kv_->block_table(3)[1], 1);
  kv_->Free(2);
  kv_->Free(3);
  Check();
  EXPECT_EQ(kv_->NumFreeBlocks(), 16);
}

TEST_F(KvCacheManagerTest, PrefixCachingOffNeverHits) {
  Make(8, 4, /*prefix=*/false);
  Prefill(1, Range(0, 9));
  kv_->Free(1);
  EXPECT_EQ(kv_->FindCachedPrefix(Range(0, 9)).num_tokens, 0);
  EXPECT_EQ(kv_->Stats().cached_blocks, 0);
  Check();
}

TEST_F(KvCacheManagerTest, EvictsCachedBlocksLeastRecentlyReleasedFirstAndOnlyWhenNeeded) {
  Make(6);
  Prefill(1, Range(0, 9));   // blocks 0 1 (cached) 2
  Prefill(2, Range(50, 9));  // blocks 3 4 (cached) 5
  kv_->Free(1);
  kv_->Free(2);
  EXPECT_EQ(kv_->Stats().cached_blocks, 4);
  EXPECT_EQ(kv_->NumFreeBlocks(), 6);
  // Two uncached blocks are free: taking two evicts nothing.
  Append(3, 8);
  EXPECT_EQ(kv_->Stats().cached_blocks, 4);
  // The next block evicts the least recently released: sequence 1's tail block (1) first,
  // as Free releases tail first.
  Append(3, 4);
  EXPECT_EQ(kv_->block_table(3).back(), 1);
  EXPECT_EQ(kv_->FindCachedPrefix(Range(0, 9)).num_tokens, 4);
  EXPECT_EQ(kv_->FindCachedPrefix(Range(50, 9)).num_tokens, 8);
  kv_->Free(3);
  Check();
}

TEST_F(KvCacheManagerTest, EvictableHitsCountAgainstAvailableBlocks) {
  Make(3);
  Prefill(1, Range(0, 9));  // all 3 blocks; 2 cached
  kv_->Free(1);
  KvPrefixHit hit = kv_->FindCachedPrefix(Range(0, 9));
  ASSERT_EQ(hit.blocks.size(), 2u);
  // 1 more token after the hit needs 1 block; the 2 hit blocks leave the free count too.
  EXPECT_TRUE(kv_->PlanAllocation(2, 1, hit).fits);
  EXPECT_FALSE(kv_->PlanAllocation(2, 5, hit).fits);  // 2 new blocks + 2 hits > 3
  ASSERT_TRUE(kv_->Commit(kv_->PlanAllocation(2, 1, hit)).ok());
  EXPECT_EQ(kv_->NumFreeBlocks(), 0);
  Check();
}

TEST_F(KvCacheManagerTest, ForkSharesBlocksAndCopiesOnWriteToASharedPartialBlock) {
  Make(8);
  Prefill(1, Range(0, 6));  // block 0 full, block 1 holds 2 tokens
  ASSERT_TRUE(kv_->Fork(1, 2).ok());
  Check();
  EXPECT_EQ(kv_->block_table(2), kv_->block_table(1));
  EXPECT_EQ(kv_->Fork(1, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kv_->Fork(7, 8).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Append(2, 1), ElementsAre(KvBlockCopy{.src = 1, .dst = 2}));
  EXPECT_THAT(kv_->block_table(2), ElementsAre(0, 2));
  // The parent owns its partial block alone again: no copy.
  EXPECT_THAT(Append(1, 1), IsEmpty());
  EXPECT_THAT(kv_->block_table(1), ElementsAre(0, 1));
  // A shared full last block is never written: appending takes a fresh block, no copy.
  Prefill(3, Range(0, 8));
  ASSERT_TRUE(kv_->Fork(3, 4).ok());
  EXPECT_THAT(Append(4, 1), IsEmpty());
  for (SeqId s : {1, 2, 3, 4}) kv_->Free(s);
  Check();
  EXPECT_EQ(kv_->NumFreeBlocks(), 8);
}

TEST_F(KvCacheManagerTest, CachedPrefixHashesAreMostRecentFirst) {
  Make(16);
  Prefill(1, Range(0, 5));
  Prefill(2, Range(100, 5));
  std::vector<uint64_t> hashes = kv_->CachedPrefixHashes(10);
  ASSERT_EQ(hashes.size(), 2u);
  EXPECT_EQ(hashes[0], model::HashFullKvBlocks(Range(100, 5), 4)[0]);
  EXPECT_EQ(hashes[1], model::HashFullKvBlocks(Range(0, 5), 4)[0]);
  // A hit makes the older prefix the most recent.
  Prefill(3, Range(0, 6));
  EXPECT_EQ(kv_->CachedPrefixHashes(1), model::HashFullKvBlocks(Range(0, 5), 4));
  KvCacheStats stats = kv_->Stats();
  EXPECT_EQ(stats.total_blocks, 16);
  EXPECT_EQ(stats.block_size, 4);
  EXPECT_EQ(stats.free_blocks, 16 - 2 - 2 - 1);  // seq 3 shares block 0 with seq 1
}

// Issue 15, finding 6: blocks cached under one tenant's salt never serve another tenant (or
// the unsalted cache), and the hashes a worker reports are the salted ones routers compute.
TEST_F(KvCacheManagerTest, CacheSaltsKeepTenantsApart) {
  Make(32);
  const uint64_t alice = model::KvRootHash("alice-salt");
  const uint64_t bob = model::KvRootHash("bob-salt");
  EXPECT_NE(alice, bob);
  EXPECT_EQ(model::KvRootHash(""), model::kRootBlockHash);
  const std::vector<int32_t> prompt = Range(0, 13);
  Prefill(1, prompt, alice);
  EXPECT_EQ(kv_->FindCachedPrefix(prompt, alice).num_tokens, 12);
  EXPECT_EQ(kv_->FindCachedPrefix(prompt, bob).num_tokens, 0);
  EXPECT_EQ(kv_->FindCachedPrefix(prompt).num_tokens, 0);
  EXPECT_THAT(kv_->CachedPrefixHashes(10),
              ::testing::UnorderedElementsAreArray(model::HashFullKvBlocks(prompt, 4, 3, alice)));
  // Bob computes his own copy; both stay cached, each under its own salt.
  Prefill(2, prompt, bob);
  EXPECT_EQ(kv_->FindCachedPrefix(prompt, bob).num_tokens, 12);
  const std::vector<int32_t>& alice_blocks = kv_->block_table(1);
  EXPECT_EQ(kv_->FindCachedPrefix(prompt, alice).blocks,
            std::vector<int32_t>(alice_blocks.begin(), alice_blocks.begin() + 3));
  kv_->Free(1);
  kv_->Free(2);
  Check();
}

// Random admissions, chunked appends, forks, computes and frees; invariants after each step
// and a full pool at the end.
TEST_F(KvCacheManagerTest, RandomizedStress) {
  Make(24, 4);
  std::mt19937 rng(1234);
  struct Seq {
    std::vector<int32_t> tokens;
  };
  std::map<SeqId, Seq> live;
  SeqId next = 0;
  auto rand = [&](int n) { return static_cast<int>(rng() % n); };
  for (int step = 0; step < 3000; ++step) {
    const int op = rand(10);
    if (op < 3) {  // admit a prompt drawn from a few shared prefixes
      std::vector<int32_t> prompt = Range(1000 * rand(3), 4 * rand(4));
      for (int i = rand(9); i > 0; --i) prompt.push_back(rand(5));
      if (prompt.empty()) prompt.push_back(7);
      KvPrefixHit hit = kv_->FindCachedPrefix(prompt);
      KvAllocationPlan plan =
          kv_->PlanAllocation(next, static_cast<int64_t>(prompt.size()) - hit.num_tokens, hit);
      if (plan.fits) {
        ASSERT_TRUE(kv_->Commit(plan).ok());
        kv_->MarkComputed(next, prompt, static_cast<int64_t>(prompt.size()));
        live[next] = {prompt};
      }
      ++next;
    } else if (op < 7 && !live.empty()) {  // append tokens to a random sequence
      auto it = std::next(live.begin(), rand(static_cast<int>(live.size())));
      const int n = 1 + rand(6);
      KvAllocationPlan plan = kv_->PlanAllocation(it->first, n);
      if (plan.fits) {
        ASSERT_TRUE(kv_->Commit(plan).ok());
        for (int i = 0; i < n; ++i) it->second.tokens.push_back(rand(5));
        kv_->MarkComputed(it->first, it->second.tokens,
                          static_cast<int64_t>(it->second.tokens.size()));
      }
    } else if (op < 8 && !live.empty()) {  // fork
      auto it = std::next(live.begin(), rand(static_cast<int>(live.size())));
      ASSERT_TRUE(kv_->Fork(it->first, next).ok());
      live[next] = it->second;
      ++next;
    } else if (!live.empty()) {  // free
      auto it = std::next(live.begin(), rand(static_cast<int>(live.size())));
      kv_->Free(it->first);
      live.erase(it);
    }
    ASSERT_TRUE(kv_->CheckInvariants().ok()) << "step " << step << ": " << kv_->CheckInvariants();
  }
  for (const auto& [id, seq] : live) kv_->Free(id);
  Check();
  EXPECT_EQ(kv_->NumFreeBlocks(), kv_->num_blocks());
  EXPECT_GT(kv_->Stats().cached_blocks, 0);
}

}  // namespace
}  // namespace expertmesh::kv
