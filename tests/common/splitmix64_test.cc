#include "common/splitmix64.h"

#include "gtest/gtest.h"

namespace expertmesh {
namespace {

// The reference splitmix64 outputs for seed 0 (Vigna's splitmix64.c): make-model's weights, the
// KV block hash and the sampler's stream all depend on these exact values.
TEST(SplitMix64Test, MatchesTheReferenceGenerator) {
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64Next(state), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(SplitMix64Next(state), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(SplitMix64Next(state), 0x06c45d188009454fULL);
  EXPECT_EQ(state, 3 * kGoldenGamma);
}

// Pinned so that a seeded request draws the same tokens on every release, host and GPU alike.
TEST(SplitMix64Test, CounterStreamIsPinned) {
  EXPECT_EQ(CounterRandom(0, 0), 0xfbe7a763b053d14cULL);
  EXPECT_EQ(CounterRandom(42, 7), 0xa79b9374dc167babULL);
  EXPECT_DOUBLE_EQ(CounterUniform(42, 7), 0.65471765139599281);
  EXPECT_NE(CounterRandom(1, 0), CounterRandom(2, 0));
  EXPECT_NE(CounterRandom(1, 0), CounterRandom(1, 1));
  static_assert(CounterRandom(0, 0) == 0xfbe7a763b053d14cULL, "usable in constant expressions");
}

TEST(SplitMix64Test, UniformIsInTheUnitInterval) {
  for (uint64_t c = 0; c < 10000; ++c) {
    const double u = CounterUniform(3, c);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

}  // namespace
}  // namespace expertmesh
