// StreamingDetokenizer: never emits broken UTF-8, holds back incomplete sequences, and
// concatenates to exactly Decode(all ids) for random id sequences.
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/tokenizer/streaming_detokenizer.h"
#include "model/tokenizer/utf8.h"
#include "tests/model/tokenizer/test_util.h"

namespace expertmesh::tokenizer {
namespace {

TEST(StreamingDetokenizerTest, HoldsBackIncompleteCharacters) {
  auto tok = testing::BuildTokenizer(testing::SmallTokenizerJson());
  ASSERT_NE(tok, nullptr);
  StreamingDetokenizer stream(*tok, false);
  // "한" is ED 95 9C; byte ids equal byte values in the small tokenizer.
  EXPECT_EQ(stream.Add('a'), "a");
  EXPECT_EQ(stream.Add(0xED), "");
  EXPECT_EQ(stream.Add(0x95), "");
  EXPECT_EQ(stream.pending_bytes(), 2u);
  EXPECT_EQ(stream.Add(0x9C), "\xED\x95\x9C");
  // A broken sequence becomes U+FFFD as soon as it cannot complete.
  EXPECT_EQ(stream.Add(0xE2), "");
  EXPECT_EQ(stream.Add('b'),
            "\xEF\xBF\xBD"
            "b");
  // An unfinished tail is flushed as one U+FFFD.
  EXPECT_EQ(stream.Add(0xF0), "");
  EXPECT_EQ(stream.Add(0x9F), "");
  EXPECT_EQ(stream.Finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.pending_bytes(), 0u);
}

TEST(StreamingDetokenizerTest, RandomSequencesMatchDecode) {
  auto tok = testing::BuildTokenizer(testing::SmallTokenizerJson());
  ASSERT_NE(tok, nullptr);
  std::mt19937 rng(7);
  // Bias toward bytes >= 0x80 so multi-byte, truncated and invalid sequences are common.
  std::uniform_int_distribution<int32_t> any_id(-2, tok->vocab_size() + 2);
  std::uniform_int_distribution<int32_t> high_byte(0x80, 0xF5);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids(rng() % 20);
    for (int32_t& id : ids) id = (rng() % 3 == 0) ? any_id(rng) : high_byte(rng);
    StreamingDetokenizer stream(*tok, trial % 2 == 0);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = stream.Add(id);
      ASSERT_EQ(FindInvalidUtf8(piece), std::string::npos);
      streamed += piece;
    }
    streamed += stream.Finish();
    ASSERT_EQ(streamed, tok->Decode(ids, trial % 2 == 0));
  }
}

TEST(Utf8Test, LossyMatchesMaximalSubpartRule) {
  std::string out;
  AppendUtf8Lossy(
      "a\xF0\x9F\x98"
      "b\xFF\xC0\xAF"
      "c",
      &out);
  // F0 9F 98 is one maximal subpart; FF, C0 and AF are each invalid on their own.
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
            "c");
  EXPECT_EQ(FindInvalidUtf8("ok \xE2\x82\xAC"), std::string::npos);
  EXPECT_EQ(FindInvalidUtf8("ok \xE2\x82"), 3u);
}

}  // namespace
}  // namespace expertmesh::tokenizer
