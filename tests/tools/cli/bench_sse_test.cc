#include "tools/cli/bench_sse.h"

#include <string>

#include "gtest/gtest.h"

namespace expertmesh::cli::bench {
namespace {

using Problem = CompletionStream::Problem;

// A stream as the router writes it: text chunks, the finish chunk, the usage chunk, [DONE].
const char kStream[] =
    "data: "
    "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"Hel\",\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"lo\",\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}"
    "\n\n"
    "data: "
    "{\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,"
    "\"total_tokens\":8,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n"
    "data: [DONE]\n\n";

TEST(CompletionStreamTest, ReadsAWholeStream) {
  CompletionStream s;
  s.Feed(kStream);
  s.Finish();
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.problem(), Problem::kNone) << s.problem_message();
  EXPECT_EQ(s.text_chunks(), 2);
  EXPECT_EQ(s.completion_tokens(), 3);
  EXPECT_EQ(s.prompt_tokens(), 5);
  EXPECT_EQ(s.cached_tokens(), 2);
}

TEST(CompletionStreamTest, PiecesOfAnySizeGiveTheSameResult) {
  const std::string all = kStream;
  for (size_t piece : {1u, 2u, 3u, 7u, 64u}) {
    CompletionStream s;
    int first_text_at = -1;
    for (size_t at = 0; at < all.size(); at += piece) {
      s.Feed(absl::string_view(all).substr(at, piece));
      if (first_text_at < 0 && s.text_chunks() > 0) first_text_at = static_cast<int>(at);
    }
    s.Finish();
    EXPECT_TRUE(s.done()) << piece;
    EXPECT_EQ(s.problem(), Problem::kNone) << piece;
    EXPECT_EQ(s.text_chunks(), 2) << piece;
    EXPECT_EQ(s.completion_tokens(), 3) << piece;
    // The first text counts when its event is complete, not before.
    EXPECT_GE(first_text_at + static_cast<int>(piece), static_cast<int>(all.find("\n\n")) + 2);
  }
}

TEST(CompletionStreamTest, CrLfCommentsAndChatDeltas) {
  CompletionStream s;
  s.Feed(": keep-alive\r\n\r\n");
  s.Feed("event: message\r\ndata: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n");
  s.Feed("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n");
  s.Feed("data: [DONE]\r\n\r\n");
  s.Finish();
  EXPECT_EQ(s.problem(), Problem::kNone) << s.problem_message();
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.text_chunks(), 1);
  EXPECT_FALSE(s.completion_tokens().has_value());  // no usage chunk came
}

TEST(CompletionStreamTest, ErrorEventsAreProblemsEvenWithDone) {
  CompletionStream s;
  s.Feed("data: {\"choices\":[{\"text\":\"a\"}]}\n\n");
  s.Feed(
      "data: {\"error\":{\"message\":\"worker group lost\",\"type\":\"service_unavailable\"}}\n\n");
  s.Feed("data: [DONE]\n\n");
  s.Finish();
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.problem(), Problem::kErrorEvent);
  EXPECT_NE(s.problem_message().find("worker group lost"), std::string::npos);
}

TEST(CompletionStreamTest, MalformedData) {
  for (const char* bad :
       {"data: {\"choices\": [\n\n", "data: [1, 2]\n\n", "data: {\"id\": 1}\n\n"}) {
    CompletionStream s;
    s.Feed(bad);
    s.Feed("data: [DONE]\n\n");
    s.Finish();
    EXPECT_EQ(s.problem(), Problem::kMalformed) << bad;
    EXPECT_FALSE(s.problem_message().empty());
  }
}

TEST(CompletionStreamTest, AStreamWithoutDoneIsIncomplete) {
  CompletionStream s;
  s.Feed("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choi");
  s.Finish();
  EXPECT_FALSE(s.done());
  EXPECT_EQ(s.problem(), Problem::kIncomplete);
  EXPECT_EQ(s.text_chunks(), 1);
}

}  // namespace
}  // namespace expertmesh::cli::bench
