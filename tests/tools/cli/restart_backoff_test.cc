// RestartBackoff scripted over explicit times: the delay doubles from the first one up to the
// cap while a group keeps failing soon after it starts, and falls back to the first delay once
// a start served for reset_after.
#include "tools/cli/restart_backoff.h"

#include <vector>

#include "gtest/gtest.h"

namespace expertmesh::cli {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

RestartBackoffOptions Options() {
  return {.initial_delay = absl::Seconds(1),
          .max_delay = absl::Seconds(30),
          .reset_after = absl::Seconds(60)};
}

TEST(RestartBackoffTest, DoublesUpToTheCapWhileStartsFailAtOnce) {
  RestartBackoff backoff(Options());
  std::vector<absl::Duration> delays;
  absl::Time now = kT0;
  for (int i = 0; i < 8; ++i) {
    const absl::Duration d = backoff.OnFailure(now);
    delays.push_back(d);
    now += d + absl::Milliseconds(200);  // the next start fails 200 ms in, never serving
  }
  const std::vector<absl::Duration> expected = {
      absl::Seconds(1),  absl::Seconds(2),  absl::Seconds(4),  absl::Seconds(8),
      absl::Seconds(16), absl::Seconds(30), absl::Seconds(30), absl::Seconds(30)};
  EXPECT_EQ(delays, expected);
  EXPECT_EQ(backoff.consecutive_failures(), 8);
}

TEST(RestartBackoffTest, AShortLifeKeepsDoubling) {
  RestartBackoff backoff(Options());
  absl::Time now = kT0;
  EXPECT_EQ(backoff.OnFailure(now), absl::Seconds(1));
  backoff.OnReady(now + absl::Seconds(3));
  // Served 59.9 s: still a crash loop.
  now += absl::Seconds(3) + absl::Seconds(59.9);
  EXPECT_EQ(backoff.OnFailure(now), absl::Seconds(2));
  backoff.OnReady(now + absl::Seconds(4));
  EXPECT_EQ(backoff.OnFailure(now + absl::Seconds(5)), absl::Seconds(4));
  EXPECT_EQ(backoff.consecutive_failures(), 3);
}

TEST(RestartBackoffTest, ServingLongEnoughResetsTheDelay) {
  RestartBackoff backoff(Options());
  absl::Time now = kT0;
  for (int i = 0; i < 6; ++i) now += backoff.OnFailure(now);  // up to the 30 s cap
  backoff.OnReady(now);
  now += absl::Seconds(60);
  EXPECT_EQ(backoff.OnFailure(now), absl::Seconds(1));
  EXPECT_EQ(backoff.consecutive_failures(), 1);
  EXPECT_EQ(backoff.OnFailure(now + absl::Seconds(1)), absl::Seconds(2));
}

TEST(RestartBackoffTest, ReadinessIsForgottenAfterAFailure) {
  // A long-past OnReady must not reset a later failure of a start that never served.
  RestartBackoff backoff(Options());
  backoff.OnReady(kT0);
  EXPECT_EQ(backoff.OnFailure(kT0 + absl::Seconds(120)), absl::Seconds(1));  // reset: new incident
  EXPECT_EQ(backoff.OnFailure(kT0 + absl::Seconds(500)), absl::Seconds(2));  // never served since
}

TEST(RestartBackoffTest, ValidateRefusesNonsense) {
  EXPECT_TRUE(Options().Validate().ok());
  RestartBackoffOptions zero = Options();
  zero.initial_delay = absl::ZeroDuration();
  EXPECT_TRUE(absl::IsInvalidArgument(zero.Validate()));
  RestartBackoffOptions inverted = Options();
  inverted.max_delay = absl::Milliseconds(500);
  EXPECT_TRUE(absl::IsInvalidArgument(inverted.Validate()));
  RestartBackoffOptions negative = Options();
  negative.reset_after = absl::Seconds(-1);
  EXPECT_TRUE(absl::IsInvalidArgument(negative.Validate()));
}

}  // namespace
}  // namespace expertmesh::cli
