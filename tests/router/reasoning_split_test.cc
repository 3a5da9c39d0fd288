// ReasoningSplitter and ReasoningStartOf: every way the output can arrive (whole, one byte at a
// time, cut at every place) gives the same reasoning and content.
#include "router/reasoning_split.h"

#include <string>

#include "gtest/gtest.h"

namespace expertmesh::router {
namespace {

struct Split {
  std::string reasoning, content;
};

Split FeedPieces(ReasoningStart start, const std::vector<std::string>& pieces) {
  ReasoningSplitter splitter(start);
  Split out;
  for (const std::string& p : pieces) {
    ReasoningSplitter::Parts parts = splitter.Feed(p);
    out.reasoning += parts.reasoning;
    out.content += parts.content;
  }
  ReasoningSplitter::Parts rest = splitter.Finish();
  out.reasoning += rest.reasoning;
  out.content += rest.content;
  return out;
}

// The same split whole, byte by byte, and cut in two at every place.
void ExpectSplit(ReasoningStart start, const std::string& text, const std::string& reasoning,
                 const std::string& content) {
  std::vector<std::vector<std::string>> ways = {{text}};
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  ways.push_back(bytes);
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    ways.push_back({text.substr(0, cut), text.substr(cut)});
  }
  for (const auto& pieces : ways) {
    const Split got = FeedPieces(start, pieces);
    EXPECT_EQ(got.reasoning, reasoning)
        << "text '" << text << "' in " << pieces.size() << " pieces";
    EXPECT_EQ(got.content, content) << "text '" << text << "' in " << pieces.size() << " pieces";
  }
}

TEST(ReasoningSplitterTest, AThinkBlockAtTheStartIsReasoning) {
  ExpectSplit(ReasoningStart::kMaybe, "<think>plan it</think>\n\nThe answer.", "plan it",
              "The answer.");
  ExpectSplit(ReasoningStart::kMaybe, "\n <think>a</think>b", "a", "b");
  ExpectSplit(ReasoningStart::kMaybe, "<think></think>answer", "", "answer");
}

TEST(ReasoningSplitterTest, WithoutABlockAtTheStartEverythingIsContent) {
  ExpectSplit(ReasoningStart::kMaybe, "The answer. <think>not this</think> more", "",
              "The answer. <think>not this</think> more");
  ExpectSplit(ReasoningStart::kMaybe, "<thin", "", "<thin");
  ExpectSplit(ReasoningStart::kMaybe, "  ", "", "  ");
  ExpectSplit(ReasoningStart::kMaybe, "", "", "");
}

TEST(ReasoningSplitterTest, AnOpenBlockFromThePromptIsReasoningUntilItsEnd) {
  ExpectSplit(ReasoningStart::kInReasoning, "step 1, step 2</think>\n\nDone.", "step 1, step 2",
              "Done.");
  // Cut off while thinking (max_tokens): all of it is reasoning, a partial tag included.
  ExpectSplit(ReasoningStart::kInReasoning, "still going </thi", "still going </thi", "");
}

TEST(ReasoningSplitterTest, OnlyTheFirstBlockCounts) {
  ExpectSplit(ReasoningStart::kMaybe, "<think>a</think>b<think>c</think>d", "a",
              "b<think>c</think>d");
  ExpectSplit(ReasoningStart::kInReasoning, "<think>x</think>y", "<think>x", "y");
}

TEST(ReasoningSplitterTest, ModelsThatDoNotThinkPassEverythingThrough) {
  ExpectSplit(ReasoningStart::kNone, "<think>a</think>b", "", "<think>a</think>b");
}

TEST(ReasoningStartTest, FromTheTemplateAndThePrompt) {
  EXPECT_EQ(ReasoningStartOf("{{ messages }}", "<think>"), ReasoningStart::kNone);
  const std::string thinking = "{% if x %}<think>\n{% endif %}";
  EXPECT_EQ(ReasoningStartOf(thinking, "user: hi\nassistant:"), ReasoningStart::kMaybe);
  EXPECT_EQ(ReasoningStartOf(thinking, "user: hi\nassistant: <think>\n"),
            ReasoningStart::kInReasoning);
  // Qwen3 with enable_thinking false closes the block in the prompt.
  EXPECT_EQ(ReasoningStartOf(thinking, "assistant: <think>\n\n</think>\n\n"),
            ReasoningStart::kMaybe);
  // An earlier turn's closed block, then an open one.
  EXPECT_EQ(ReasoningStartOf(thinking, "<think>a</think>b user: more <think>\n"),
            ReasoningStart::kInReasoning);
}

}  // namespace
}  // namespace expertmesh::router
