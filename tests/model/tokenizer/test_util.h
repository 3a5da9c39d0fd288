// Helpers shared by the tokenizer tests: locating the fetched real tokenizers and the committed
// reference data.
#ifndef EXPERTMESH_TESTS_MODEL_TOKENIZER_TEST_UTIL_H_
#define EXPERTMESH_TESTS_MODEL_TOKENIZER_TEST_UTIL_H_

#include <memory>
#include <string>

#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer::testing {

// Directory of a real tokenizer fetched by tools/tokenizer/fetch_reference_tokenizers.sh.
inline std::string RealTokenizerDir(const std::string& name) {
  return std::string(EXPERTMESH_BINARY_DIR) + "/test-data/tokenizers/" + name;
}

inline std::string TestDataPath(const std::string& file) {
  return std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/tokenizer/data/" + file;
}

// Loads a real tokenizer; on failure records a test failure that says how to fetch the files,
// and returns null.
std::unique_ptr<Tokenizer> LoadRealTokenizer(const std::string& name);

// A small byte-level BPE tokenizer.json: the 256 byte symbols plus a few merges
// ("Ġt", "he", "Ġthe", "ll", "hell", "hello", "el", "a-", "-b", "--"), a GPT-2 ByteLevel
// pre-tokenizer and decoder, and no added tokens. Tests edit it to probe one feature at a time.
nlohmann::json SmallTokenizerJson();

// Builds a tokenizer from `json`, or records a failure and returns null.
std::unique_ptr<Tokenizer> BuildTokenizer(const nlohmann::json& json);

// Parses a committed JSON data file, or records a failure and returns null JSON.
nlohmann::json LoadJsonData(const std::string& file);

}  // namespace expertmesh::tokenizer::testing

#endif  // EXPERTMESH_TESTS_MODEL_TOKENIZER_TEST_UTIL_H_
