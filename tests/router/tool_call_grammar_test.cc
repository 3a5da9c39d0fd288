// Tool-call grammars (router/tool_call_grammar.h) against the parser that reads calls back
// (router/tool_calls.h): for each published template's call format, what the grammar accepts is
// what ToolCallSplitter turns into the call, and nothing else gets through (another function, a
// missing required argument, plain text). The grammars go through GBNF text and the engine with
// a byte-level vocabulary, as the worker would run them.
#include "router/tool_call_grammar.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"
#include "model/grammar/gbnf.h"
#include "router/tool_calls.h"
#include "tests/router/grammar_test_util.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;
using testing::GrammarAccepts;

std::string Template(const std::string& name) {
  std::ifstream in(std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/chat/data/templates/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const Json& Tools() {
  static const Json tools = Json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {
      "type": "object",
      "properties": {"city": {"type": "string", "maxLength": 12},
                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                     "days": {"type": "integer", "minimum": 1, "maximum": 7}},
      "required": ["city"]}}},
    {"type": "function", "function": {"name": "now"}}])");
  return tools;
}

std::string Gbnf(const std::string& chat_template, const ToolChoice& choice) {
  const ToolCallFormat format = ToolCallFormatOf(chat_template);
  absl::StatusOr<grammar::Grammar> g =
      ToolCallGrammar(format, ToolCallBodyOf(format, chat_template), Tools(), choice);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? grammar::PrintGbnf(*g) : "";
}

std::vector<ToolCall> ParsedCalls(const std::string& chat_template, const std::string& text) {
  ToolCallSplitter splitter(ToolCallFormatOf(chat_template), &Tools());
  ToolCallSplitter::Parts parts = splitter.Feed(text);
  ToolCallSplitter::Parts rest = splitter.Finish();
  // Only the whitespace between calls is left (the response then has no content).
  EXPECT_EQ(absl::StripAsciiWhitespace(parts.content + rest.content), "") << text;
  parts.calls.insert(parts.calls.end(), rest.calls.begin(), rest.calls.end());
  return parts.calls;
}

struct FormatCase {
  const char* template_file;
  ToolCallBody body;
  std::string weather;  // get_weather(city="Paris", days=3) as the model writes it
  std::string now;      // now() as the model writes it
  std::string separator;
  std::string open, close;  // around all calls
};

std::vector<FormatCase> Cases() {
  return {
      {"qwen2_5.jinja", ToolCallBody::kJson,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": "
       "3}}\n</tool_call>",
       "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", "\n", "", ""},
      {"qwen3_coder.jinja", ToolCallBody::kFunctionTags,
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
       "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
       "<tool_call>\n<function=now>\n</function>\n</tool_call>", "\n", "", ""},
      {"glm4_6.jinja", ToolCallBody::kArgKeys,
       "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
       "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
       "<tool_call>now\n</tool_call>", "\n", "", ""},
      {"deepseek_v3.jinja", ToolCallBody::kDeepSeekFenced,
       "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\", "
       "\"days\": 3}\n```<｜tool▁call▁end｜>",
       "<｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n```json\n{}\n```<｜tool▁call▁end｜>", "\n",
       "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"},
      {"llama3_1.jinja", ToolCallBody::kLlamaJson,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 3}}",
       "{\"name\": \"now\", \"parameters\": {}}", "; ", "", ""},
  };
}

TEST(ToolCallGrammarTest, EachTemplateFormatRoundTripsThroughTheParser) {
  const ToolChoice required{.kind = ToolChoice::Kind::kRequired};
  const ToolChoice weather{.kind = ToolChoice::Kind::kFunction, .function = "get_weather"};
  for (const FormatCase& c : Cases()) {
    SCOPED_TRACE(c.template_file);
    const std::string tmpl = Template(c.template_file);
    ASSERT_FALSE(tmpl.empty());
    EXPECT_EQ(ToolCallBodyOf(ToolCallFormatOf(tmpl), tmpl), c.body);
    const std::string any = Gbnf(tmpl, required);
    const std::string named = Gbnf(tmpl, weather);
    const std::string one = c.open + c.weather + c.close;
    const std::string two = c.open + c.weather + c.separator + c.now + c.close;
    EXPECT_TRUE(GrammarAccepts(any, one)) << any;
    EXPECT_TRUE(GrammarAccepts(any, two)) << any;
    EXPECT_TRUE(GrammarAccepts(named, one)) << named;
    // The named function only, once.
    EXPECT_FALSE(GrammarAccepts(named, c.open + c.now + c.close));
    EXPECT_FALSE(GrammarAccepts(named, two));
    // No calls at all, or text instead.
    EXPECT_FALSE(GrammarAccepts(any, c.open + c.close));
    EXPECT_FALSE(GrammarAccepts(any, "It is sunny."));

    // What the grammar accepts is what the parser reads back.
    const std::vector<ToolCall> calls = ParsedCalls(tmpl, two);
    ASSERT_EQ(calls.size(), 2u) << two;
    EXPECT_EQ(calls[0].name, "get_weather");
    EXPECT_EQ(Json::parse(calls[0].arguments), Json::parse(R"({"city": "Paris", "days": 3})"));
    EXPECT_EQ(calls[1].name, "now");
    EXPECT_EQ(Json::parse(calls[1].arguments), Json::object());
  }
}

// The arguments follow the function's schema: a missing required property, a value of the
// wrong type or out of range, or an unknown enum value is refused.
TEST(ToolCallGrammarTest, ArgumentsFollowTheSchema) {
  const ToolChoice weather{.kind = ToolChoice::Kind::kFunction, .function = "get_weather"};
  const std::string json = Gbnf(Template("qwen2_5.jinja"), weather);
  auto call = [](const std::string& args) {
    return "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + args + "}\n</tool_call>";
  };
  EXPECT_TRUE(GrammarAccepts(json, call(R"({"city": "Oslo", "unit": "celsius"})")));
  EXPECT_FALSE(GrammarAccepts(json, call(R"({"unit": "celsius"})")));
  EXPECT_FALSE(GrammarAccepts(json, call(R"({"city": "Oslo", "days": 9})")));
  EXPECT_FALSE(GrammarAccepts(json, call(R"({"city": "Oslo", "unit": "kelvin"})")));
  EXPECT_FALSE(GrammarAccepts(json, call(R"({"city": 3})")));

  // XML-style values: strings are raw text (with newlines), enums one of their values, other
  // types JSON of the property's schema.
  const std::string xml = Gbnf(Template("qwen3_coder.jinja"), weather);
  auto param = [](const std::string& key, const std::string& value) {
    return "<parameter=" + key + ">\n" + value + "\n</parameter>\n";
  };
  auto xml_call = [](const std::string& params) {
    return "<tool_call>\n<function=get_weather>\n" + params + "</function>\n</tool_call>";
  };
  EXPECT_TRUE(GrammarAccepts(xml, xml_call(param("city", "New\nYork") + param("unit", "celsius"))));
  EXPECT_FALSE(GrammarAccepts(xml, xml_call(param("unit", "celsius"))));
  EXPECT_FALSE(GrammarAccepts(xml, xml_call(param("city", "x") + param("unit", "kelvin"))));
  EXPECT_FALSE(GrammarAccepts(xml, xml_call(param("city", "x") + param("days", "three"))));
  EXPECT_FALSE(GrammarAccepts(xml, xml_call(param("city", "x") + param("days", "8"))));
  // maxLength bounds raw text too (12 characters here; code points, not bytes).
  EXPECT_TRUE(GrammarAccepts(xml, xml_call(param("city", "Zürich-Basel"))));
  EXPECT_FALSE(GrammarAccepts(xml, xml_call(param("city", "Zürich-Basel!"))));
  EXPECT_FALSE(GrammarAccepts(json, call(R"({"city": "Zürich-Basel!"})")));
}

TEST(ToolCallGrammarTest, RefusesWhatCannotBeConstrained) {
  const ToolChoice required{.kind = ToolChoice::Kind::kRequired};
  // A template without a call format.
  absl::StatusOr<grammar::Grammar> none =
      ToolCallGrammar(ToolCallFormat::kNone, ToolCallBody::kJson, Tools(), required);
  EXPECT_TRUE(absl::IsInvalidArgument(none.status()));
  EXPECT_NE(none.status().message().find("tool-call format"), std::string::npos);
  // A parameters schema that does not compile names the function.
  const Json bad = Json::parse(R"([{"type": "function", "function": {"name": "f", "parameters":
      {"type": "array", "minItems": 2, "maxItems": 1}}}])");
  absl::StatusOr<grammar::Grammar> g =
      ToolCallGrammar(ToolCallFormat::kHermes, ToolCallBody::kJson, bad, required);
  EXPECT_TRUE(absl::IsInvalidArgument(g.status()));
  EXPECT_NE(g.status().message().find("'f'"), std::string::npos) << g.status();
  EXPECT_NE(g.status().message().find("minItems"), std::string::npos) << g.status();
  // A name tools lacks.
  absl::StatusOr<grammar::Grammar> missing =
      ToolCallGrammar(ToolCallFormat::kHermes, ToolCallBody::kJson, Tools(),
                      {.kind = ToolChoice::Kind::kFunction, .function = "nope"});
  EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos);
}

}  // namespace
}  // namespace expertmesh::router
