// Structured-output requests at the router: the fields OpenAI and vLLM clients send, read into
// one constraint (at most one per request), compiled to GBNF that accepts what the constraint
// allows (behind a reasoning prefix for models that think), refused with the reason when they
// cannot be met, and compiled once for a schema sent again.
#include "router/structured_output.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/openai_request.h"
#include "router/output_constraint.h"
#include "router/request_validation.h"
#include "tests/router/grammar_test_util.h"

namespace expertmesh::router {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;
using Kind = OutputConstraint::Kind;
using testing::GrammarAccepts;

absl::StatusOr<OutputConstraint> Read(const std::string& body) {
  OutputConstraint c;
  absl::Status s = ReadOutputConstraint(Json::parse(body), &c);
  if (!s.ok()) return s;
  return c;
}

TEST(OutputConstraintTest, ReadsEveryFieldClientsSend) {
  struct Case {
    const char* body;
    Kind kind;
    const char* text;
    const char* field;
  };
  const Case cases[] = {
      {R"({"response_format": {"type": "text"}})", Kind::kNone, "", ""},
      {R"({"response_format": {"type": "json_object"}})", Kind::kJsonObject, "", "response_format"},
      {R"({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
          "strict": true, "schema": {"type": "integer"}}}})",
       Kind::kJsonSchema, R"({"type":"integer"})", "response_format"},
      {R"({"structured_outputs": {"json": {"type": "null"}}})", Kind::kJsonSchema,
       R"({"type":"null"})", "structured_outputs.json"},
      {R"({"structured_outputs": {"json": "{\"type\": \"null\"}"}})", Kind::kJsonSchema,
       R"({"type":"null"})", "structured_outputs.json"},
      {R"({"structured_outputs": {"regex": "a+"}})", Kind::kRegex, "a+",
       "structured_outputs.regex"},
      {R"({"structured_outputs": {"grammar": "root ::= \"a\""}})", Kind::kGrammar,
       R"(root ::= "a")", "structured_outputs.grammar"},
      {R"({"structured_outputs": {"json_object": true}})", Kind::kJsonObject, "",
       "structured_outputs.json_object"},
      {R"({"structured_outputs": {"json_object": false}})", Kind::kNone, "", ""},
      {R"({"guided_json": {"type": "boolean"}})", Kind::kJsonSchema, R"({"type":"boolean"})",
       "guided_json"},
      {R"({"guided_regex": "[0-9]"})", Kind::kRegex, "[0-9]", "guided_regex"},
      {R"({"guided_grammar": "root ::= \"b\""})", Kind::kGrammar, R"(root ::= "b")",
       "guided_grammar"},
      {R"({"guided_decoding_backend": "xgrammar"})", Kind::kNone, "", ""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<OutputConstraint> r = Read(c.body);
    ASSERT_TRUE(r.ok()) << c.body << ": " << r.status();
    EXPECT_EQ(r->kind, c.kind) << c.body;
    EXPECT_EQ(r->text, c.text) << c.body;
    EXPECT_EQ(r->field, c.field) << c.body;
  }
  absl::StatusOr<OutputConstraint> choice = Read(R"({"guided_choice": ["a", "b c"]})");
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->kind, Kind::kChoice);
  EXPECT_THAT(choice->choices, ::testing::ElementsAre("a", "b c"));
}

TEST(OutputConstraintTest, RefusesTwoConstraintsAndWrongShapes) {
  absl::StatusOr<OutputConstraint> two =
      Read(R"({"response_format": {"type": "json_object"}, "guided_regex": "a"})");
  ASSERT_TRUE(absl::IsInvalidArgument(two.status()));
  EXPECT_THAT(two.status().message(), HasSubstr("'response_format' and 'guided_regex'"));
  EXPECT_EQ(ParamOf(two.status()), "guided_regex");
  EXPECT_TRUE(absl::IsInvalidArgument(
      Read(R"({"structured_outputs": {"regex": "a", "choice": ["b"]}})").status()));
  struct Bad {
    const char* body;
    const char* param;
    const char* says;
  };
  const Bad bad[] = {
      {R"({"response_format": "json"})", "response_format", "must be an object"},
      {R"({"response_format": {"type": "yaml"}})", "response_format", "'yaml'"},
      {R"({"response_format": {"type": "json_schema"}})", "response_format", "'json_schema'"},
      {R"({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})",
       "response_format", "schema' is required"},
      {R"({"response_format": {"type": "json_schema", "json_schema": {"schema": [1]}}})",
       "response_format", "schema"},
      {R"({"guided_json": "{not json"})", "guided_json", "JSON"},
      {R"({"guided_regex": 5})", "guided_regex", "string"},
      {R"({"guided_choice": []})", "guided_choice", "non-empty"},
      {R"({"guided_choice": ["a", 1]})", "guided_choice", "strings"},
      {R"({"structured_outputs": {"structural_tag": {}}})", "structured_outputs", "not supported"},
  };
  for (const Bad& b : bad) {
    absl::StatusOr<OutputConstraint> r = Read(b.body);
    ASSERT_TRUE(absl::IsInvalidArgument(r.status())) << b.body;
    EXPECT_EQ(ParamOf(r.status()), b.param) << b.body;
    EXPECT_THAT(r.status().message(), HasSubstr(b.says)) << b.body;
  }
  // Both endpoints read them.
  absl::StatusOr<OpenAiRequest> completions =
      ParseOpenAiRequest(R"({"prompt": "x", "guided_regex": "a+"})", /*chat=*/false);
  ASSERT_TRUE(completions.ok());
  EXPECT_EQ(completions->params.constraint.kind, Kind::kRegex);
}

PromptInput Text() { return PromptInput{}; }

TEST(StructuredOutputTest, CompilesEachKindToAGrammarThatAcceptsWhatItAllows) {
  StructuredOutputCompiler compiler;
  auto gbnf = [&](OutputConstraint c) {
    absl::StatusOr<std::string> text = compiler.GrammarText(c, Text(), ReasoningStart::kNone, "");
    EXPECT_TRUE(text.ok()) << text.status();
    return text.value_or("");
  };
  const std::string schema = gbnf({.kind = Kind::kJsonSchema,
                                   .text = R"({"type": "object", "properties": {"n": {"type":
                                       "integer"}}, "required": ["n"]})",
                                   .field = "response_format"});
  EXPECT_TRUE(GrammarAccepts(schema, R"({"n": 12})"));
  EXPECT_FALSE(GrammarAccepts(schema, R"({"n": "12"})"));
  EXPECT_FALSE(GrammarAccepts(schema, R"({})"));
  const std::string object = gbnf({.kind = Kind::kJsonObject, .field = "response_format"});
  EXPECT_TRUE(GrammarAccepts(object, R"({"a": [1, {"b": null}]})"));
  EXPECT_FALSE(GrammarAccepts(object, "[1]"));
  const std::string regex =
      gbnf({.kind = Kind::kRegex, .text = "[A-Z][a-z]+-[0-9]{3}", .field = "guided_regex"});
  EXPECT_TRUE(GrammarAccepts(regex, "Abc-123"));
  EXPECT_FALSE(GrammarAccepts(regex, "Abc-12"));
  const std::string choice = gbnf(
      {.kind = Kind::kChoice, .choices = {"yes", "no", "maybe later"}, .field = "guided_choice"});
  EXPECT_TRUE(GrammarAccepts(choice, "maybe later"));
  EXPECT_FALSE(GrammarAccepts(choice, "maybe"));
  const std::string grammar = gbnf({.kind = Kind::kGrammar,
                                    .text = R"(root ::= ("cat" | "dog") [0-9])",
                                    .field = "guided_grammar"});
  EXPECT_TRUE(GrammarAccepts(grammar, "dog7"));
  EXPECT_FALSE(GrammarAccepts(grammar, "cow7"));
  // No constraint: no grammar.
  EXPECT_EQ(compiler.GrammarText({}, Text(), ReasoningStart::kNone, "").value_or("x"), "");
}

TEST(StructuredOutputTest, RefusesWhatCannotBeMetWithTheReason) {
  StructuredOutputCompiler compiler;
  struct Bad {
    OutputConstraint c;
    const char* param;
    const char* says;
  };
  const Bad bad[] = {
      // A schema no value satisfies is a 400 now, never a request that cannot end.
      {{.kind = Kind::kJsonSchema,
        .text = R"({"type": "array", "minItems": 1, "maxItems": 0})",
        .field = "response_format"},
       "response_format",
       "minItems"},
      {{.kind = Kind::kJsonSchema, .text = R"({"type": "strng"})", .field = "guided_json"},
       "guided_json",
       "strng"},
      {{.kind = Kind::kRegex, .text = "(a", .field = "structured_outputs.regex"},
       "structured_outputs",
       "structured_outputs.regex"},
      {{.kind = Kind::kGrammar, .text = "root ::= (", .field = "guided_grammar"},
       "guided_grammar",
       "guided_grammar"},
      {{.kind = Kind::kGrammar, .text = "root ::= undefined-rule", .field = "guided_grammar"},
       "guided_grammar",
       "undefined-rule"},
  };
  for (const Bad& b : bad) {
    absl::StatusOr<std::string> r = compiler.GrammarText(b.c, Text(), ReasoningStart::kNone, "");
    ASSERT_TRUE(absl::IsInvalidArgument(r.status())) << b.c.text;
    EXPECT_EQ(ParamOf(r.status()), b.param) << b.c.text;
    EXPECT_THAT(r.status().message(), HasSubstr(b.says)) << b.c.text;
  }
}

// For a model that thinks the constraint covers the answer: the reasoning (to the first
// </think>) and a little whitespace come first.
TEST(StructuredOutputTest, ReasoningComesBeforeTheConstrainedAnswer) {
  StructuredOutputCompiler compiler;
  const OutputConstraint c{.kind = Kind::kChoice, .choices = {"yes", "no"}, .field = "x"};
  const std::string in_reasoning =
      *compiler.GrammarText(c, Text(), ReasoningStart::kInReasoning, "");
  EXPECT_TRUE(GrammarAccepts(in_reasoning, "let me think {yes}</think>\n\nno"));
  EXPECT_TRUE(GrammarAccepts(in_reasoning, "</think>yes"));
  EXPECT_FALSE(GrammarAccepts(in_reasoning, "yes"));
  EXPECT_FALSE(GrammarAccepts(in_reasoning, "a</think>b</think>yes"));
  EXPECT_FALSE(GrammarAccepts(in_reasoning, "a</think>\n\n\n\n\n\nyes"));
  const std::string maybe = *compiler.GrammarText(c, Text(), ReasoningStart::kMaybe, "");
  EXPECT_TRUE(GrammarAccepts(maybe, "yes"));
  EXPECT_TRUE(GrammarAccepts(maybe, "<think>hmm</think>\n\nno"));
  EXPECT_FALSE(GrammarAccepts(maybe, "hmm</think>no"));
}

TEST(StructuredOutputTest, ToolChoiceRequiredUsesTheTemplatesFormat) {
  StructuredOutputCompiler compiler;
  PromptInput chat;
  chat.kind = PromptInput::Kind::kChat;
  chat.tools = Json::parse(R"([{"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"x": {"type": "integer"}},
                     "required": ["x"]}}}])");
  chat.tool_choice_required = true;
  const std::string hermes = "{{ '<tool_call>' }}";
  absl::StatusOr<std::string> gbnf = compiler.GrammarText({}, chat, ReasoningStart::kNone, hermes);
  ASSERT_TRUE(gbnf.ok()) << gbnf.status();
  EXPECT_TRUE(GrammarAccepts(*gbnf,
                             "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n"
                             "</tool_call>"));
  // Not with another constraint, and not without a call format.
  absl::StatusOr<std::string> both =
      compiler.GrammarText({.kind = Kind::kRegex, .text = "a", .field = "guided_regex"}, chat,
                           ReasoningStart::kNone, hermes);
  EXPECT_EQ(ParamOf(both.status()), "tool_choice");
  EXPECT_THAT(both.status().message(), HasSubstr("'guided_regex' cannot be combined"));
  absl::StatusOr<std::string> plain = compiler.GrammarText({}, chat, ReasoningStart::kNone, "x");
  EXPECT_EQ(ParamOf(plain.status()), "tool_choice");
  EXPECT_THAT(plain.status().message(), HasSubstr("tool-call format"));
  // A parameters schema that does not compile is about `tools`.
  chat.tools = Json::parse(R"([{"type": "function", "function": {"name": "f",
      "parameters": {"type": "strng"}}}])");
  absl::StatusOr<std::string> bad = compiler.GrammarText({}, chat, ReasoningStart::kNone, hermes);
  EXPECT_EQ(ParamOf(bad.status()), "tools");
  EXPECT_THAT(bad.status().message(), HasSubstr("strng"));
}

TEST(StructuredOutputTest, TheSameConstraintCompilesOnce) {
  StructuredOutputCompiler compiler(/*cache_entries=*/2);
  const OutputConstraint a{
      .kind = Kind::kJsonSchema, .text = R"({"type": "integer"})", .field = "response_format"};
  const OutputConstraint b{.kind = Kind::kRegex, .text = "b+", .field = "guided_regex"};
  const OutputConstraint bad{.kind = Kind::kRegex, .text = "(", .field = "guided_regex"};
  const std::string first = *compiler.GrammarText(a, Text(), ReasoningStart::kNone, "");
  EXPECT_EQ(compiler.cache().hits(), 0u);
  EXPECT_EQ(*compiler.GrammarText(a, Text(), ReasoningStart::kNone, ""), first);
  EXPECT_EQ(compiler.cache().hits(), 1u);
  // Another reasoning start is another grammar.
  EXPECT_NE(*compiler.GrammarText(a, Text(), ReasoningStart::kMaybe, ""), first);
  EXPECT_EQ(compiler.cache().hits(), 1u);
  // Errors are remembered too; the cache stays within its bound.
  EXPECT_FALSE(compiler.GrammarText(bad, Text(), ReasoningStart::kNone, "").ok());
  EXPECT_FALSE(compiler.GrammarText(bad, Text(), ReasoningStart::kNone, "").ok());
  EXPECT_EQ(compiler.cache().hits(), 2u);
  EXPECT_TRUE(compiler.GrammarText(b, Text(), ReasoningStart::kNone, "").ok());
  EXPECT_EQ(compiler.cache().size(), 2u);
}

// The cache keeps the most recently used entries within both bounds, and an entry larger than
// the byte bound is returned but never kept.
TEST(GrammarTextCacheTest, LeastRecentlyUsedWithinEntriesAndBytes) {
  GrammarTextCache cache(/*max_entries=*/3, /*max_bytes=*/3 * (1 + 100 + 64));
  int compiles = 0;
  auto get = [&](const std::string& key, size_t bytes = 100) {
    return cache
        .GetOrCompile(key,
                      [&]() -> absl::StatusOr<std::string> {
                        ++compiles;
                        return std::string(bytes, key[0]);
                      })
        .value();
  };
  get("a");
  get("b");
  get("c");
  EXPECT_EQ(compiles, 3);
  get("a");  // a is now the most recent; b the least
  EXPECT_EQ(compiles, 3);
  get("d");  // evicts b
  EXPECT_EQ(cache.size(), 3u);
  get("a");
  get("c");
  EXPECT_EQ(compiles, 4);
  get("b");
  EXPECT_EQ(compiles, 5);
  // Over the byte bound alone: compiled every time, the others kept.
  EXPECT_EQ(get("z", 1000).size(), 1000u);
  EXPECT_EQ(get("z", 1000).size(), 1000u);
  EXPECT_EQ(compiles, 7);
  EXPECT_EQ(cache.size(), 3u);
  // A larger entry that fits the bytes evicts as many as it needs.
  get("y", 2 * 100 + 64);
  EXPECT_EQ(cache.size(), 2u);
}

}  // namespace
}  // namespace expertmesh::router
