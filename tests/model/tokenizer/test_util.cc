#include "tests/model/tokenizer/test_util.h"

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/tokenizer/byte_level.h"

namespace expertmesh::tokenizer::testing {

std::unique_ptr<Tokenizer> LoadRealTokenizer(const std::string& name) {
  const std::string dir = RealTokenizerDir(name);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::LoadFromDirectory(dir);
  if (!tok.ok()) {
    ADD_FAILURE() << "cannot load the real " << name << " tokenizer from " << dir << ": "
                  << tok.status()
                  << "\nFetch it first: tools/tokenizer/fetch_reference_tokenizers.sh "
                  << EXPERTMESH_BINARY_DIR << "/test-data/tokenizers";
    return nullptr;
  }
  return std::move(*tok);
}

nlohmann::json SmallTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToChar(static_cast<unsigned char>(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"},    {"h", "e"}, {"Ġt", "he"}, {"l", "l"}, {"he", "ll"},
      {"hell", "o"}, {"e", "l"}, {"a", "-"},   {"-", "b"}, {"-", "-"}};
  nlohmann::json merge_list = nlohmann::json::array();
  int next_id = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = next_id++;
    merge_list.push_back(a + " " + b);
  }
  return nlohmann::json{
      {"version", "1.0"},
      {"added_tokens", nlohmann::json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", merge_list}}}};
}

std::unique_ptr<Tokenizer> BuildTokenizer(const nlohmann::json& json) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromJson(json.dump(), "small.json");
  if (!tok.ok()) {
    ADD_FAILURE() << tok.status();
    return nullptr;
  }
  return std::move(*tok);
}

nlohmann::json LoadJsonData(const std::string& file) {
  absl::StatusOr<nlohmann::json> data = ReadJsonFile(TestDataPath(file));
  if (!data.ok()) {
    ADD_FAILURE() << "cannot read test data " << file << ": " << data.status();
    return nlohmann::json();
  }
  return std::move(*data);
}

}  // namespace expertmesh::tokenizer::testing
