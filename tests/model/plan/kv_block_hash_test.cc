#include "model/plan/kv_block_hash.h"

#include <vector>

#include "gtest/gtest.h"

namespace expertmesh::model {
namespace {

TEST(KvBlockHashTest, ChainsParents) {
  std::vector<int32_t> a = {1, 2, 3, 4};
  std::vector<int32_t> b = {5, 6, 7, 8};
  const uint64_t ha = HashKvBlock(kRootBlockHash, a);
  EXPECT_EQ(ha, HashKvBlock(kRootBlockHash, a));  // deterministic
  // The same block under another parent is another prefix.
  EXPECT_NE(HashKvBlock(ha, b), HashKvBlock(kRootBlockHash, b));
  // Order and content matter.
  EXPECT_NE(ha, HashKvBlock(kRootBlockHash, std::vector<int32_t>{2, 1, 3, 4}));
  EXPECT_NE(ha, HashKvBlock(kRootBlockHash, std::vector<int32_t>{1, 2, 3, 5}));
  // A block of one more zero token differs (the count is mixed in).
  EXPECT_NE(HashKvBlock(kRootBlockHash, std::vector<int32_t>{0}),
            HashKvBlock(kRootBlockHash, std::vector<int32_t>{0, 0}));
}

TEST(KvBlockHashTest, PinnedValuesForRouters) {
  // Routers may reimplement the documented function; pinned values make a change visible
  // (it would break prefix affinity with routers running the old one).
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<uint64_t> h = HashFullKvBlocks(tokens, 4);
  ASSERT_EQ(h.size(), 2u);  // the trailing partial block has no hash
  EXPECT_EQ(h[0], HashKvBlock(kRootBlockHash, std::span(tokens).subspan(0, 4)));
  EXPECT_EQ(h[1], HashKvBlock(h[0], std::span(tokens).subspan(4, 4)));
  EXPECT_EQ(HashFullKvBlocks(tokens, 4, 1).size(), 1u);
  // Reference values from an independent Python implementation of the documented algorithm.
  EXPECT_EQ(h[0], 0x6bb0b2ac2a44575dULL);
  EXPECT_EQ(h[1], 0x7a0c15a8fa88b944ULL);
  EXPECT_EQ(HashKvBlock(kRootBlockHash, {}), 0x92ad6ead9651c178ULL);
  EXPECT_EQ(HashKvBlock(kRootBlockHash, std::vector<int32_t>{-1, 7}), 0x8bd224cd915ac7dbULL);
}

}  // namespace
}  // namespace expertmesh::model
