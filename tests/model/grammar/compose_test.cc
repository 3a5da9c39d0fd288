#include "model/grammar/compose.h"

#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/grammar/expr_util.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_schema.h"
#include "tests/model/grammar/recognizer.h"

namespace expertmesh::grammar {
namespace {

using testing::Recognize;

TEST(ChoiceGrammarTest, AcceptsExactlyOneOfTheStrings) {
  const std::vector<std::string> choices = {"yes", "no", "yes please", "", "\"quoted\"\n"};
  const Grammar g = ChoiceGrammar(choices);
  for (const std::string& c : choices) EXPECT_TRUE(Recognize(g, c)) << c;
  for (const char* s : {"y", "yesno", "no ", "maybe"}) EXPECT_FALSE(Recognize(g, s)) << s;
  absl::StatusOr<Grammar> back = ParseGbnf(PrintGbnf(g));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, g);
  // No choices: nothing at all.
  const Grammar none = ChoiceGrammar({});
  EXPECT_FALSE(Recognize(none, ""));
  EXPECT_FALSE(Recognize(none, "x"));
}

TEST(EmbedTest, CopiesRulesUnderAPrefixWithoutClashes) {
  // A tool-call envelope around two argument schemas whose rules have the same names.
  absl::StatusOr<Grammar> weather = JsonSchemaToGrammar(
      R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})");
  absl::StatusOr<Grammar> add = JsonSchemaToGrammar(
      R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},
          "required":["a","b"]})");
  ASSERT_TRUE(weather.ok() && add.ok());
  Grammar g;
  g.rules.push_back({"root", Expr::Empty()});
  g.rules.push_back({"tool-get_weather-root", Lit("taken")});  // forces a unique name
  const Expr weather_args = Embed(g, *weather, "tool-get_weather");
  const Expr add_args = Embed(g, *add, "tool add");
  EXPECT_EQ(weather_args.kind, Expr::Kind::kRuleRef);
  EXPECT_EQ(weather_args.rule, "tool-get_weather-root-2");
  EXPECT_EQ(add_args.rule, "tool-add-root");
  Grammar answer;
  EXPECT_EQ(Embed(answer, *add, "answer-").rule, "answer-root");
  g.rules[0].body = Seq({Lit("<tool_call>{\"name\": "),
                         Alt({Seq({Lit("\"get_weather\", \"arguments\": "), weather_args}),
                              Seq({Lit("\"add\", \"arguments\": "), add_args})}),
                         Lit("}</tool_call>")});
  EXPECT_TRUE(Recognize(
      g, R"(<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>)"));
  EXPECT_TRUE(
      Recognize(g, R"(<tool_call>{"name": "add", "arguments": {"a": 1, "b": -2}}</tool_call>)"));
  EXPECT_FALSE(
      Recognize(g, R"(<tool_call>{"name": "add", "arguments": {"city": "Paris"}}</tool_call>)"));
  std::set<std::string> names;
  for (const Rule& r : g.rules) EXPECT_TRUE(names.insert(r.name).second) << r.name;
  absl::StatusOr<Grammar> back = ParseGbnf(PrintGbnf(g));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << PrintGbnf(g);
  EXPECT_EQ(*back, g);
}

// Every string over a small alphabet up to a length: TextThrough accepts exactly those that end
// with the marker and contain it nowhere before.
void CheckTextThroughExhaustively(const std::string& marker, const std::string& alphabet,
                                  int max_length) {
  Grammar g;
  g.rules.push_back({"root", Expr::Empty()});
  g.rules[0].body = TextThrough(g, marker, "think");
  std::function<void(std::string)> visit = [&](std::string s) {
    const size_t first = s.find(marker);
    const bool want = first != std::string::npos && first + marker.size() == s.size();
    ASSERT_EQ(Recognize(g, s), want) << "marker '" << marker << "', text '" << s << "'\n"
                                     << PrintGbnf(g);
    if (static_cast<int>(s.size()) == max_length) return;
    for (char c : alphabet) visit(s + c);
  };
  visit("");
}

TEST(TextThroughTest, StopsAtTheFirstOccurrenceOfTheMarker) {
  CheckTextThroughExhaustively("abab", "abc", 9);
  CheckTextThroughExhaustively("aab", "ab", 10);
  CheckTextThroughExhaustively("aaa", "ab", 10);
  CheckTextThroughExhaustively("abcabd", "abcd", 8);
  CheckTextThroughExhaustively("x", "xy", 6);
}

TEST(TextThroughTest, ReasoningThenAnswer) {
  absl::StatusOr<Grammar> answer = JsonSchemaToGrammar(R"({"enum": ["yes", "no"]})");
  ASSERT_TRUE(answer.ok());
  Grammar g;
  g.rules.push_back({"root", Expr::Empty()});
  const Expr think = TextThrough(g, "</think>", "reasoning");
  const Expr json = Embed(g, *answer, "answer");
  g.rules[0].body = Seq({Lit("<think>"), think, Lit("\n"), json});
  EXPECT_TRUE(Recognize(g, "<think>a < b, </thin k> 中文</think>\n\"yes\""));
  EXPECT_TRUE(Recognize(g, "<think></think>\n\"no\""));
  EXPECT_FALSE(Recognize(g, "<think>x</think>y</think>\n\"no\""));
  EXPECT_FALSE(Recognize(g, "<think>x\n\"no\""));
  absl::StatusOr<Grammar> back = ParseGbnf(PrintGbnf(g));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, g);
}

TEST(TextThroughTest, MultiByteMarkers) {
  // DeepSeek's tool-call markers: code points of three bytes, one repeated inside the marker.
  const std::string marker = "<｜tool▁call▁end｜>";
  Grammar g;
  g.rules.push_back({"root", Expr::Empty()});
  g.rules[0].body = Seq({TextThrough(g, marker, "args"), Lit("!")});
  EXPECT_TRUE(Recognize(g, "{\"a\": 1}" + marker + "!"));
  EXPECT_TRUE(Recognize(g, "<｜tool▁call<｜tool▁call▁end" + marker + "!"));
  EXPECT_TRUE(Recognize(g, "｜▁" + marker + "!"));
  EXPECT_FALSE(Recognize(g, "x" + marker + "y" + marker + "!"));
  EXPECT_FALSE(Recognize(g, "<｜tool▁call▁end｜!"));
  EXPECT_EQ(g.rules.size(), 1 + 17u);  // one rule per code point of the marker
}

TEST(TextThroughTest, EmptyMarkerIsEmpty) {
  Grammar g;
  EXPECT_EQ(TextThrough(g, "", "x"), Expr::Empty());
  EXPECT_TRUE(g.rules.empty());
}

}  // namespace
}  // namespace expertmesh::grammar
