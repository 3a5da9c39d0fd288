// The tokenizers make-model trains must encode identically in expertmesh's tokenizer and in
// Hugging Face `tokenizers`. testdata/hf_token_ids.json holds the ids `tokenizers` 0.23.3 gave
// for the tiny (2048-token) tokenizer of every architecture, written by
//   tools/reference/check_make_model.sh BINARY --write-golden
//   tests/tools/make_model/testdata/hf_token_ids.json
// It must be refreshed that way whenever the corpus or the trainer changes.
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/make_model/corpus.h"
#include "tools/make_model/make_model.h"
#include "tools/make_model/tokenizer_trainer.h"

namespace expertmesh::make_model {
namespace {

TEST(HfTokenIdsTest, TrainedTokenizersEncodeLikeHuggingFace) {
  const std::string path =
      std::string(EXPERTMESH_SOURCE_DIR) + "/tests/tools/make_model/testdata/hf_token_ids.json";
  absl::StatusOr<nlohmann::json> golden = ReadJsonFile(path);
  ASSERT_TRUE(golden.ok()) << golden.status();
  ASSERT_EQ(golden->size(), ArchNames().size());
  const std::vector<CorpusDocument> corpus = BuiltinCorpus();
  for (const auto& [arch_name, record] : golden->items()) {
    SCOPED_TRACE(arch_name);
    absl::StatusOr<model::Architecture> arch = ParseArchName(arch_name);
    ASSERT_TRUE(arch.ok()) << arch.status();
    absl::StatusOr<TrainedTokenizer> trained = TrainTokenizer(corpus, FamilyFor(*arch), 2048, 4096);
    ASSERT_TRUE(trained.ok()) << trained.status();
    ASSERT_EQ(static_cast<int64_t>(trained->bpe.merges.size()), record["num_merges"].get<int64_t>())
        << "the trained tokenizer changed (corpus or trainer); refresh " << path;
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
        tokenizer::Tokenizer::FromJson(trained->files.tokenizer.dump(), arch_name);
    ASSERT_TRUE(tok.ok()) << tok.status();
    for (const nlohmann::json& c : record["cases"]) {
      const std::string text = c["text"].get<std::string>();
      absl::StatusOr<std::vector<int32_t>> ids = (*tok)->Encode(text, false);
      ASSERT_TRUE(ids.ok()) << ids.status();
      EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << text;
      absl::StatusOr<std::vector<int32_t>> with_special = (*tok)->Encode(text, true);
      ASSERT_TRUE(with_special.ok());
      EXPECT_EQ(*with_special, c["ids_with_special"].get<std::vector<int32_t>>()) << text;
    }
  }
}

}  // namespace
}  // namespace expertmesh::make_model
