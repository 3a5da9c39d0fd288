// The front ends take text from clients: mutated inputs must give a grammar or an error, never a
// crash, and every grammar they give must print and parse back unchanged.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_schema.h"
#include "model/grammar/regex_grammar.h"

namespace expertmesh::grammar {
namespace {

// Random edits of `text`: replaced, inserted, deleted and duplicated bytes, biased towards the
// characters that structure each syntax.
std::string Mutate(std::string text, std::mt19937_64& rng) {
  static const std::string kInteresting =
      std::string("()[]{}|*+?^$\\\"'.-,:#\n \x01\xC3\xA9\xFF") + "0123456789eE";
  const auto uniform = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n)(rng); };
  for (int edits = static_cast<int>(uniform(3)) + 1; edits > 0; --edits) {
    const size_t pos = text.empty() ? 0 : uniform(text.size() - 1);
    const char c = uniform(3) == 0 ? static_cast<char>(uniform(255))
                                   : kInteresting[uniform(kInteresting.size() - 1)];
    switch (uniform(3)) {
      case 0:
        if (!text.empty()) text[pos] = c;
        break;
      case 1:
        text.insert(pos, 1, c);
        break;
      case 2:
        if (!text.empty()) text.erase(pos, 1);
        break;
      default:
        text.insert(pos, text.substr(pos, uniform(8)));
    }
  }
  return text;
}

void ExpectRoundTrip(const absl::StatusOr<Grammar>& g, const std::string& input) {
  if (!g.ok()) {
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << input;
    return;
  }
  absl::StatusOr<Grammar> back = ParseGbnf(PrintGbnf(*g));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << input << "\n" << PrintGbnf(*g);
  EXPECT_EQ(*back, *g) << input;
}

TEST(FrontEndFuzzTest, GbnfTextNeverCrashes) {
  const std::vector<std::string> seeds = {
      "root ::= \"a\" [b-d]* (x | \"\\x41\")+ # c\nx ::= [^\\n\\]]{2,5} .?",
      "root ::= object\nobject ::= \"{\" ( pair (\",\" pair)* )? \"}\"\npair ::= [a-z]+ \":\" "
      "[0-9]{1,3}",
      "root ::= \"\\u00e9\\U0001F600\" | \"\" | [\\t -~]"};
  std::mt19937_64 rng(1);
  for (int i = 0; i < 3000; ++i) {
    const std::string input = Mutate(seeds[i % seeds.size()], rng);
    ExpectRoundTrip(ParseGbnf(input), input);
  }
}

TEST(FrontEndFuzzTest, RegexNeverCrashes) {
  const std::vector<std::string> seeds = {"^[A-Z]{3}-\\d{4}$", "(?:ab|c(?P<n>d+?)){1,3}\\p{L}.",
                                          "[^\\s\\x41-\\u0042]*|\\.\\*|$"};
  std::mt19937_64 rng(2);
  for (int i = 0; i < 3000; ++i) {
    const std::string input = Mutate(seeds[i % seeds.size()], rng);
    ExpectRoundTrip(RegexToGrammar(input), input);
  }
}

TEST(FrontEndFuzzTest, JsonSchemaNeverCrashes) {
  std::vector<std::string> seeds;
  const std::filesystem::path corpus =
      std::filesystem::path(EXPERTMESH_SOURCE_DIR) / "tests/data/structured/schemas";
  for (const char* name : {"strict_order.json", "number_bounds.json", "string_patterns.json",
                           "linked_list_definitions.json", "prefix_items_rest.json"}) {
    std::ifstream in(corpus / name);
    std::stringstream s;
    s << in.rdbuf();
    seeds.push_back(s.str());
  }
  std::mt19937_64 rng(3);
  for (int i = 0; i < 3000; ++i) {
    const std::string input = Mutate(seeds[i % seeds.size()], rng);
    ExpectRoundTrip(JsonSchemaToGrammar(input), input);
  }
}

}  // namespace
}  // namespace expertmesh::grammar
