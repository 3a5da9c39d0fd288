// Parity with Hugging Face `tokenizers` on real tokenizer files (DeepSeek-V3, Qwen2): the ids
// recorded by tools/tokenizer/make_reference.py must come out exactly, decode must invert encode,
// and decoding arbitrary id sequences must match HF's text (U+FFFD placement included).
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/tokenizer/streaming_detokenizer.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/utf8.h"
#include "tests/model/tokenizer/test_util.h"

namespace expertmesh::tokenizer {
namespace {

using testing::LoadJsonData;
using testing::LoadRealTokenizer;

struct ParityCase {
  std::string reference;  // reference_<name>.json
  std::string directory;  // fetched tokenizer directory
};

class ParityTest : public ::testing::TestWithParam<ParityCase> {
 protected:
  void SetUp() override {
    reference_ = LoadJsonData("reference_" + GetParam().reference + ".json");
    ASSERT_TRUE(reference_.is_object());
    if (reference_.contains("post_processor")) {
      // A variant: the real file with the post-processor the reference was recorded with.
      const std::string dir = testing::RealTokenizerDir(GetParam().directory);
      absl::StatusOr<nlohmann::json> root = ReadJsonFile(dir + "/tokenizer.json");
      ASSERT_TRUE(root.ok()) << root.status() << "\nFetch it first: "
                             << "tools/tokenizer/fetch_reference_tokenizers.sh "
                             << EXPERTMESH_BINARY_DIR << "/test-data/tokenizers";
      (*root)["post_processor"] = reference_["post_processor"];
      auto tok = Tokenizer::FromJson(root->dump(), dir + "/tokenizer.json (variant)");
      ASSERT_TRUE(tok.ok()) << tok.status();
      tokenizer_ = std::move(*tok);
    } else {
      tokenizer_ = LoadRealTokenizer(GetParam().directory);
    }
    ASSERT_NE(tokenizer_, nullptr);
  }

  static std::vector<int32_t> Ids(const nlohmann::json& array) {
    return array.get<std::vector<int32_t>>();
  }

  nlohmann::json reference_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(ParityTest, EncodeMatchesHuggingFace) {
  ASSERT_GT(reference_["cases"].size(), 0u);
  int mismatches = 0;
  for (const nlohmann::json& c : reference_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    for (bool add_special : {false, true}) {
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, add_special);
      ASSERT_TRUE(ids.ok()) << ids.status();
      const std::vector<int32_t> expected = Ids(c[add_special ? "ids_with_special" : "ids"]);
      if (*ids != expected && ++mismatches <= 5) {
        size_t i = 0;
        while (i < ids->size() && i < expected.size() && (*ids)[i] == expected[i]) ++i;
        ADD_FAILURE() << "add_special_tokens=" << add_special << " text (" << text.size()
                      << " bytes) \"" << text.substr(0, 200) << "\"\nfirst difference at id #" << i
                      << ": got " << (i < ids->size() ? std::to_string((*ids)[i]) : "<end>") << " ("
                      << (i < ids->size() ? std::string(tokenizer_->IdToToken((*ids)[i])) : "")
                      << "), HF " << (i < expected.size() ? std::to_string(expected[i]) : "<end>")
                      << " ("
                      << (i < expected.size() ? std::string(tokenizer_->IdToToken(expected[i]))
                                              : "")
                      << ")";
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(ParityTest, DecodeInvertsEncode) {
  // decode(encode(x)) == x, except that a normalizing tokenizer (Qwen2: NFC) returns the
  // normalized text, which HF's decode gives too.
  const bool normalizes = reference_["normalizes"].get<bool>();
  int changed_by_normalizer = 0;
  for (const nlohmann::json& c : reference_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    const std::string decoded = tokenizer_->Decode(*ids, /*skip_special_tokens=*/false);
    EXPECT_EQ(decoded, c["decoded"].get<std::string>());
    if (!normalizes) {
      EXPECT_EQ(decoded, text);
    }
    if (decoded != text) ++changed_by_normalizer;
  }
  // The corpus has decomposed text on purpose: NFC must have changed something in it.
  if (normalizes) {
    EXPECT_GT(changed_by_normalizer, 0);
  }
}

TEST_P(ParityTest, DecodeMatchesHuggingFace) {
  ASSERT_GT(reference_["decode_cases"].size(), 0u);
  for (const nlohmann::json& c : reference_["decode_cases"]) {
    const std::vector<int32_t> ids = Ids(c["ids"]);
    EXPECT_EQ(tokenizer_->Decode(ids, false), c["text"].get<std::string>());
    EXPECT_EQ(tokenizer_->Decode(ids, true), c["text_skip_special"].get<std::string>());
  }
}

TEST_P(ParityTest, StreamingDetokenizerConcatenatesToDecode) {
  std::vector<std::vector<int32_t>> sequences;
  for (const nlohmann::json& c : reference_["cases"]) sequences.push_back(Ids(c["ids"]));
  for (const nlohmann::json& c : reference_["decode_cases"]) sequences.push_back(Ids(c["ids"]));
  for (bool skip : {false, true}) {
    StreamingDetokenizer stream(*tokenizer_, skip);
    for (const std::vector<int32_t>& ids : sequences) {
      std::string streamed;
      for (int32_t id : ids) {
        std::string piece = stream.Add(id);
        // Every emitted piece is valid UTF-8 on its own.
        EXPECT_EQ(FindInvalidUtf8(piece), std::string::npos) << piece;
        streamed += piece;
        EXPECT_LE(stream.pending_bytes(), 3u);
      }
      streamed += stream.Finish();
      EXPECT_EQ(streamed, tokenizer_->Decode(ids, skip));
    }
  }
}

TEST_P(ParityTest, HeapMergeAgreesWithLinearMerge) {
  // A fresh instance has its own (empty) word cache, so every word goes through the heap path.
  const std::string dir = testing::RealTokenizerDir(GetParam().directory);
  auto heap_tok = Tokenizer::LoadFromDirectory(dir);
  ASSERT_TRUE(heap_tok.ok()) << heap_tok.status();
  (*heap_tok)->bpe_model_for_testing().set_heap_threshold_for_testing(0);
  for (const nlohmann::json& c : reference_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    absl::StatusOr<std::vector<int32_t>> ids = (*heap_tok)->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (reference_.contains("post_processor")) continue;  // same model as the base reference
    EXPECT_EQ(*ids, Ids(c["ids"])) << text.substr(0, 200);
  }
}

TEST_P(ParityTest, ConcurrentEncodeMatches) {
  // Each thread has its own word cache and regex scratch; results must not depend on that.
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const auto& cases = reference_["cases"];
      for (size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[(i + 17 * t) % cases.size()];
        auto ids = tokenizer_->Encode(c["text"].get<std::string>(), true);
        if (!ids.ok() || *ids != Ids(c["ids_with_special"])) ++mismatches;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, ParityTest,
                         ::testing::Values(ParityCase{"deepseek-v3", "deepseek-v3"},
                                           ParityCase{"qwen2", "qwen2"},
                                           ParityCase{"deepseek-v3-bos", "deepseek-v3"}),
                         [](const auto& info) {
                           std::string name = info.param.reference;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace expertmesh::tokenizer
