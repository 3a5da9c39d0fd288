// ToolCallSplitter and ParseToolChoice: Hermes-style <tool_call> blocks out of the output however
// it arrives (whole, byte by byte, cut anywhere), malformed blocks left as content, and the
// tool_choice values the server takes or refuses.
#include "router/tool_calls.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;

struct Split {
  std::string content;
  std::vector<ToolCall> calls;
};

Split FeedPieces(ToolCallFormat format, const Json& tools, const std::vector<std::string>& pieces) {
  ToolCallSplitter splitter(format, &tools);
  Split out;
  auto take = [&](ToolCallSplitter::Parts parts) {
    out.content += parts.content;
    for (ToolCall& c : parts.calls) out.calls.push_back(std::move(c));
  };
  for (const std::string& p : pieces) take(splitter.Feed(p));
  take(splitter.Finish());
  return out;
}

void ExpectSplit(const std::string& text, const std::string& content,
                 const std::vector<std::pair<std::string, std::string>>& calls,
                 ToolCallFormat format = ToolCallFormat::kHermes, const Json& tools = Json()) {
  std::vector<std::vector<std::string>> ways = {{text}};
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  ways.push_back(bytes);
  for (size_t cut = 0; cut <= text.size(); ++cut)
    ways.push_back({text.substr(0, cut), text.substr(cut)});
  for (const auto& pieces : ways) {
    SCOPED_TRACE(testing::Message() << pieces.size() << " pieces");
    const Split got = FeedPieces(format, tools, pieces);
    EXPECT_EQ(got.content, content);
    ASSERT_EQ(got.calls.size(), calls.size());
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(got.calls[i].name, calls[i].first);
      EXPECT_EQ(got.calls[i].arguments, calls[i].second);
    }
  }
}

TEST(ToolCallSplitterTest, BlocksBecomeCallsAndTheRestStaysContent) {
  ExpectSplit(
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
      "{\"city\": \"Paris\", \"days\": [1, 2]}}\n</tool_call>",
      "Let me check.\n", {{"get_weather", R"({"city":"Paris","days":[1,2]})"}});
  ExpectSplit(
      "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": "
      "\"b\", \"parameters\": {\"x\": 1}}</tool_call>",
      "\n", {{"a", "{}"}, {"b", R"({"x":1})"}});
  // Arguments already as a JSON string, or missing.
  ExpectSplit("<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"q\\\": 2}\"}</tool_call>", "",
              {{"a", R"({"q": 2})"}});
  ExpectSplit("<tool_call>{\"name\": \"now\"}</tool_call>", "", {{"now", "{}"}});
}

// The XML-style bodies inside <tool_call>: Qwen3-Coder / Qwen3.5 and GLM-4.6, values typed by the
// tool's schema where it says so (text otherwise, and where the value does not fit the type).
TEST(ToolCallSplitterTest, XmlStyleBodiesTypedByTheSchema) {
  const Json tools = Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"},
      "days": {"type": "integer"}, "units": {"type": "object"}, "hot": {"type": "boolean"}}}}}])");
  ExpectSplit(
      "ok\n<tool_call>\n<function=get_weather>\n<parameter=city>\n42\n</parameter>\n"
      "<parameter=days>\n3\n</parameter>\n<parameter=hot>\ntrue\n</parameter>\n"
      "<parameter=note>\nmulti\nline\n</parameter>\n</function>\n</tool_call>",
      "ok\n", {{"get_weather", R"({"city":"42","days":3,"hot":true,"note":"multi\nline"})"}},
      ToolCallFormat::kHermes, tools);
  ExpectSplit(
      "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
      "<arg_key>days</arg_key>\n<arg_value>two</arg_value>\n<arg_key>units</arg_key>\n"
      "<arg_value>{\"t\": \"C\"}</arg_value>\n</tool_call>",
      "", {{"get_weather", R"({"city":"Paris","days":"two","units":{"t":"C"}})"}},
      ToolCallFormat::kHermes, tools);
  ExpectSplit("<tool_call>now</tool_call>", "", {{"now", "{}"}});
  // Broken XML-style bodies stay as written.
  for (const std::string broken :
       {"<tool_call><function=f><parameter=a>1</function></tool_call>",
        "<tool_call><function=f>junk</function></tool_call>",
        "<tool_call>f<arg_key>a</arg_key></tool_call>", "<tool_call>two words</tool_call>"}) {
    ExpectSplit(broken, broken, {});
  }
}

TEST(ToolCallSplitterTest, MalformedOrUnclosedBlocksStayAsWritten) {
  ExpectSplit("x <tool_call>{not json}</tool_call> y", "x <tool_call>{not json}</tool_call> y", {});
  ExpectSplit("<tool_call>{\"arguments\": {}}</tool_call>",
              "<tool_call>{\"arguments\": {}}</tool_call>", {});
  ExpectSplit("cut off <tool_call>{\"name\": \"a\", \"argu",
              "cut off <tool_call>{\"name\": \"a\", \"argu", {});
  ExpectSplit("a <tool_ca", "a <tool_ca", {});
  ExpectSplit("plain text", "plain text", {});
}

TEST(ToolCallSplitterTest, WithoutAFormatEverythingIsContent) {
  ToolCallSplitter splitter(ToolCallFormat::kNone);
  const std::string text = "<tool_call>{\"name\": \"a\"}</tool_call>";
  EXPECT_EQ(splitter.Feed(text).content, text);
  EXPECT_TRUE(splitter.Finish().content.empty());
  EXPECT_EQ(ToolCallFormatOf("{{ messages }}"), ToolCallFormat::kNone);
  EXPECT_EQ(ToolCallFormatOf("{% if tools %}<tool_call>{% endif %}"), ToolCallFormat::kHermes);
}

// DeepSeek-V3 / R1-0528 (function + fenced JSON) and V3.1 (name, then JSON), as their chat
// templates write them; the markers around the calls are dropped.
TEST(ToolCallSplitterTest, DeepSeekFormats) {
  constexpr auto kDs = ToolCallFormat::kDeepSeek;
  ExpectSplit(
      "Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
      "```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function"
      "<｜tool▁sep｜>now\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
      "Let me look.\n", {{"get_weather", R"({"city":"Paris"})"}, {"now", "{}"}}, kDs);
  ExpectSplit(
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": "
      "\"Oslo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
      "", {{"get_weather", R"({"city":"Oslo"})"}}, kDs);
  // No separator, or arguments that are no JSON object: left as written.
  ExpectSplit("<｜tool▁call▁begin｜>get_weather<｜tool▁call▁end｜>",
              "<｜tool▁call▁begin｜>get_weather<｜tool▁call▁end｜>", {}, kDs);
  ExpectSplit("<｜tool▁call▁begin｜>f<｜tool▁sep｜>[1]<｜tool▁call▁end｜>",
              "<｜tool▁call▁begin｜>f<｜tool▁sep｜>[1]<｜tool▁call▁end｜>", {}, kDs);
  EXPECT_EQ(ToolCallFormatOf("{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'}}"), kDs);
}

// Llama 3.1-3.3 answer a call with the whole output: {"name", "parameters"} objects joined by
// ";", optionally after <|python_tag|>. Output that starts otherwise streams as content.
TEST(ToolCallSplitterTest, Llama3JsonCalls) {
  constexpr auto kLlama = ToolCallFormat::kLlama3Json;
  ExpectSplit(R"({"name": "get_weather", "parameters": {"city": "Paris"}})", "",
              {{"get_weather", R"({"city":"Paris"})"}}, kLlama);
  ExpectSplit(
      R"( <|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "arguments": {"x": "}"}})",
      "", {{"a", "{}"}, {"b", R"({"x":"}"})"}}, kLlama);
  // Plain answers, and JSON that is no call, are content as written.
  ExpectSplit(R"(The weather is fine. {"name": 1})", R"(The weather is fine. {"name": 1})", {},
              kLlama);
  ExpectSplit(R"({"answer": 42})", R"({"answer": 42})", {}, kLlama);
  ExpectSplit(R"({"name": "a", "parameters": {}} trailing)",
              R"({"name": "a", "parameters": {}} trailing)", {}, kLlama);
  ExpectSplit(R"({"name": "a", "parameters": {)", R"({"name": "a", "parameters": {)", {}, kLlama);
  // Content that does not start a call is not held back.
  ToolCallSplitter streaming(kLlama);
  EXPECT_EQ(streaming.Feed("Hello").content, "Hello");
  EXPECT_EQ(streaming.Feed(" {\"name\": \"a\"}").content, " {\"name\": \"a\"}");

  const std::string llama31 =
      "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument "
      "name and its value}. {%- elif message.role == \"ipython\" %}";
  EXPECT_EQ(ToolCallFormatOf(llama31), kLlama);
  EXPECT_EQ(ToolCallFormatOf("{\"parameters\": 1}"), ToolCallFormat::kNone);  // no ipython role
}

TEST(ToolChoiceTest, TakesNoneAutoRequiredAndNamedFunctions) {
  const Json tools = Json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  auto choice = [&](const char* text, const Json* with = nullptr) {
    const Json j = Json::parse(text);
    return ParseToolChoice(&j, with == nullptr ? &tools : with);
  };
  using Kind = ToolChoice::Kind;
  EXPECT_EQ(ParseToolChoice(nullptr, &tools)->kind, Kind::kAuto);
  EXPECT_EQ(choice(R"("auto")")->kind, Kind::kAuto);
  EXPECT_EQ(choice(R"("none")")->kind, Kind::kNone);
  EXPECT_EQ(choice("null")->kind, Kind::kAuto);
  EXPECT_EQ(choice(R"("required")")->kind, Kind::kRequired);
  absl::StatusOr<ToolChoice> named = choice(R"({"type": "function", "function": {"name": "f"}})");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->kind, Kind::kFunction);
  EXPECT_EQ(named->function, "f");
  for (const char* refused : {R"("sometimes")", "3", R"({"type": "function"})",
                              R"({"type": "function", "function": {"name": "g"}})"}) {
    absl::StatusOr<ToolChoice> c = choice(refused);
    EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << refused;
  }
  EXPECT_NE(
      choice(R"({"type": "function", "function": {"name": "g"}})").status().message().find("'g'"),
      std::string::npos);
  // "required" with nothing to call.
  const Json none = Json::array();
  EXPECT_NE(choice(R"("required")", &none).status().message().find("needs 'tools'"),
            std::string::npos);
}

}  // namespace
}  // namespace expertmesh::router
