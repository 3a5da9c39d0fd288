// The schema corpus (tests/data/structured/): every schema converts, its GBNF round-trips, random
// instances generated from the schema (json_instance.h) are in the grammar's language, compact and
// pretty-printed, and near misses are not; every invalid schema is refused with its reason.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_schema.h"
#include "nlohmann/json.hpp"
#include "tests/model/grammar/json_instance.h"
#include "tests/model/grammar/recognizer.h"
#include "tests/model/grammar/sampler.h"

namespace expertmesh::grammar {
namespace {

using testing::GrammarSampler;
using ::testing::HasSubstr;
using testing::JsonInstanceGenerator;
using testing::Recognize;
using Json = nlohmann::ordered_json;

const std::filesystem::path kCorpus =
    std::filesystem::path(EXPERTMESH_SOURCE_DIR) / "tests/data/structured";

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Schema file stems in `dir` (sorted, so test names are stable).
std::vector<std::string> Stems(const std::string& dir) {
  std::vector<std::string> stems;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus / dir)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".json")) stems.push_back(entry.path().stem().string());
  }
  std::sort(stems.begin(), stems.end());
  return stems;
}

TEST(JsonSchemaCorpusTest, CorpusIsComplete) {
  EXPECT_GE(Stems("schemas").size(), 60u);
  EXPECT_GE(Stems("invalid").size(), 10u);
  for (const std::string& stem : Stems("invalid")) {
    EXPECT_TRUE(std::filesystem::exists(kCorpus / "invalid" / (stem + ".reason.txt"))) << stem;
  }
}

class CorpusSchemaTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CorpusSchemaTest, GrammarAcceptsInstancesAndRejectsNearMisses) {
  const std::string text = ReadFile(kCorpus / "schemas" / (GetParam() + ".json"));
  absl::StatusOr<Grammar> g = JsonSchemaToGrammar(text);
  ASSERT_TRUE(g.ok()) << g.status();
  const std::string gbnf = PrintGbnf(*g);
  absl::StatusOr<Grammar> back = ParseGbnf(gbnf);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << gbnf;
  EXPECT_EQ(*back, *g) << gbnf;
  EXPECT_EQ(PrintGbnf(*JsonSchemaToGrammar(text)), gbnf);

  const Json schema = Json::parse(text);
  JsonInstanceGenerator generator(schema, /*seed=*/std::hash<std::string>{}(GetParam()) % 1000);
  const Json& root = generator.Resolve(schema);
  // EXPERTMESH_GRAMMAR_DUMP_INSTANCES=<dir> writes the instances (one per line) to
  // <dir>/<schema>.jsonl, to check them with another validator (e.g. Python's jsonschema); the
  // sentences of EverySentenceOfTheGrammarIsJson go to <schema>.samples.jsonl as JSON strings.
  std::ofstream dump;
  if (const char* dir = std::getenv("EXPERTMESH_GRAMMAR_DUMP_INSTANCES")) {
    dump.open(std::filesystem::path(dir) / (GetParam() + ".jsonl"));
  }
  for (int i = 0; i < 25; ++i) {
    const Json instance = generator.Generate();
    ASSERT_EQ(generator.error(), "");
    const std::string compact = instance.dump();
    if (dump.is_open()) dump << compact << "\n";
    ASSERT_TRUE(Recognize(*g, compact)) << compact << "\n" << gbnf;
    if (!generator.used_container_literal()) {
      EXPECT_TRUE(Recognize(*g, instance.dump(2))) << instance.dump(2) << "\n" << gbnf;
      EXPECT_TRUE(Recognize(*g, instance.dump(1, '\t'))) << instance.dump(1, '\t');
    }
    // Near misses that no schema of the corpus admits.
    if (compact.size() > 2 && (compact.back() == '}' || compact.back() == ']')) {
      std::string trailing_comma = compact;
      trailing_comma.insert(trailing_comma.size() - 1, ",");
      EXPECT_FALSE(Recognize(*g, trailing_comma)) << trailing_comma;
    }
    if (compact.back() == '}' || compact.back() == ']' || compact.back() == '"') {
      EXPECT_FALSE(Recognize(*g, compact.substr(0, compact.size() - 1))) << compact;
    }
    if (!instance.is_object() || !root.is_object() || !root.contains("properties")) continue;
    for (const Json& key : root.value("required", Json::array())) {
      Json missing = instance;
      missing.erase(key.get<std::string>());
      EXPECT_FALSE(Recognize(*g, missing.dump())) << missing.dump();
    }
    if (root.value("additionalProperties", Json(false)) == Json(false)) {
      Json extra = instance;
      extra["zz_unexpected"] = 1;
      EXPECT_FALSE(Recognize(*g, extra.dump())) << extra.dump();
    }
    for (const auto& [key, value] : instance.items()) {
      if (!root["properties"].contains(key)) continue;  // an additionalProperties member
      const Json& property = generator.Resolve(root["properties"][key]);
      if (!property.is_object() || !property.contains("type") || !property["type"].is_string() ||
          property.contains("enum") || property.contains("const")) {
        continue;
      }
      Json wrong = instance;
      wrong[key] = property["type"] == "string" ? Json(12345) : Json("wrong");
      EXPECT_FALSE(Recognize(*g, wrong.dump())) << wrong.dump();
    }
  }
}

// Soundness: whatever the grammar lets a model write is JSON (and, checked offline with Python's
// jsonschema through EXPERTMESH_GRAMMAR_DUMP_INSTANCES, valid under the schema).
TEST_P(CorpusSchemaTest, EverySentenceOfTheGrammarIsJson) {
  const std::string text = ReadFile(kCorpus / "schemas" / (GetParam() + ".json"));
  absl::StatusOr<Grammar> g = JsonSchemaToGrammar(text);
  ASSERT_TRUE(g.ok()) << g.status();
  std::ofstream dump;
  if (const char* dir = std::getenv("EXPERTMESH_GRAMMAR_DUMP_INSTANCES")) {
    dump.open(std::filesystem::path(dir) / (GetParam() + ".samples.jsonl"));
  }
  GrammarSampler sampler(*g, /*seed=*/7);
  for (int i = 0; i < 50; ++i) {
    const std::string sentence = sampler.Sample();
    ASSERT_TRUE(Json::accept(sentence)) << sentence;
    if (dump.is_open()) dump << Json(sentence).dump() << "\n";  // the exact text, quoted
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, CorpusSchemaTest, ::testing::ValuesIn(Stems("schemas")),
                         [](const auto& info) { return info.param; });

class InvalidSchemaTest : public ::testing::TestWithParam<std::string> {};

TEST_P(InvalidSchemaTest, IsRefusedWithItsReason) {
  const std::string text = ReadFile(kCorpus / "invalid" / (GetParam() + ".json"));
  std::string reason = ReadFile(kCorpus / "invalid" / (GetParam() + ".reason.txt"));
  while (!reason.empty() && (reason.back() == '\n' || reason.back() == '\r')) reason.pop_back();
  ASSERT_FALSE(reason.empty());
  absl::StatusOr<Grammar> g = JsonSchemaToGrammar(text);
  ASSERT_FALSE(g.ok()) << PrintGbnf(*g);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(g.status().message()), HasSubstr(reason));
}

INSTANTIATE_TEST_SUITE_P(Corpus, InvalidSchemaTest, ::testing::ValuesIn(Stems("invalid")),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace expertmesh::grammar
