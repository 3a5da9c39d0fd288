#include "router/stop_matcher.h"

#include "gtest/gtest.h"

namespace expertmesh::router {
namespace {

// Feeds `pieces` and returns everything emitted (plus the flush when no stop matched).
std::string Feed(StopMatcher& m, const std::vector<std::string>& pieces, std::string* matched) {
  std::string out;
  for (const std::string& p : pieces) {
    StopMatcher::Result r = m.Add(p);
    out += r.text;
    if (r.stopped) {
      *matched = r.matched;
      return out;
    }
  }
  return out + m.Flush();
}

TEST(StopMatcher, NoStopsPassesEverythingAtOnce) {
  StopMatcher m({});
  EXPECT_EQ(m.Add("hello").text, "hello");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcher, HoldsBackAPossibleStartAndReleasesItWhenItIsNot) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.Add("abcE").text, "abc");
  EXPECT_EQ(m.Add("N").text, "");
  EXPECT_EQ(m.Add("x").text, "ENx");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, MatchAcrossPiecesCutsBeforeTheStop) {
  StopMatcher m({"END"});
  std::string matched;
  EXPECT_EQ(Feed(m, {"one E", "N", "D two"}, &matched), "one ");
  EXPECT_EQ(matched, "END");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Add("more").text, "");
}

TEST(StopMatcher, EarliestMatchWins) {
  StopMatcher m({"world", "lo"});
  std::string matched;
  EXPECT_EQ(Feed(m, {"hello world"}, &matched), "hel");
  EXPECT_EQ(matched, "lo");
}

TEST(StopMatcher, FlushReturnsHeldTextWhenGenerationEnds) {
  StopMatcher m({"stop here"});
  std::string matched;
  EXPECT_EQ(Feed(m, {"we stop", " he"}, &matched), "we stop he");
  EXPECT_TRUE(matched.empty());
}

TEST(StopMatcher, MultiByteStopNeverSplitsACharacter) {
  // The stop string starts with "é" (2 bytes); text ends with "é" alone: held back whole.
  StopMatcher m({"été"});
  StopMatcher::Result r = m.Add("café");
  EXPECT_EQ(r.text, "caf");
  r = m.Add("s");
  EXPECT_EQ(r.text, "és");
  std::string matched;
  StopMatcher m2({"été"});
  EXPECT_EQ(Feed(m2, {"un é", "t", "é chaud"}, &matched), "un ");
  EXPECT_EQ(matched, "été");
}

TEST(StopMatcher, EveryStreamEmitsThePrefixBeforeTheFirstMatch) {
  // Property: whatever the chunking, the output is the text up to the first stop occurrence.
  const std::string text = "alpha beta gamma STOP delta";
  for (size_t a = 0; a <= text.size(); ++a) {
    for (size_t b = a; b <= text.size(); b += 3) {
      StopMatcher m({"STOP", "xyz"});
      std::string matched;
      std::string out =
          Feed(m, {text.substr(0, a), text.substr(a, b - a), text.substr(b)}, &matched);
      ASSERT_EQ(out, "alpha beta gamma ") << a << " " << b;
      ASSERT_EQ(matched, "STOP");
    }
  }
}

}  // namespace
}  // namespace expertmesh::router
