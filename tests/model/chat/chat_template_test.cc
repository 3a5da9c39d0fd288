// Unit tests of the chat-template interpreter: each construct against the output jinja2 gives
// (with trim_blocks/lstrip_blocks as transformers sets them), and the error paths.
#include "model/chat/chat_template.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace expertmesh::chat {
namespace {

using Json = nlohmann::ordered_json;

std::string Render(const std::string& source, const Json& context = Json::object()) {
  auto parsed = ChatTemplate::Parse(source);
  if (!parsed.ok()) return "PARSE ERROR: " + std::string(parsed.status().message());
  auto out = parsed->Render(context);
  if (!out.ok()) return "RENDER ERROR: " + std::string(out.status().message());
  return *out;
}

absl::Status RenderStatus(const std::string& source, const Json& context = Json::object(),
                          const EvalOptions& options = {}) {
  auto parsed = ChatTemplate::Parse(source);
  if (!parsed.ok()) return parsed.status();
  return parsed->Render(context, options).status();
}

TEST(ChatTemplateTest, LiteralsPrintLikePython) {
  EXPECT_EQ(Render("{{ none }}|{{ None }}|{{ true }}|{{ False }}"), "None|None|True|False");
  EXPECT_EQ(Render("{{ 1 + 2 }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 2 * 1.5 }}|{{ 1.0 }}"),
            "3|3.5|3|2|3.0|1.0");
  EXPECT_EQ(Render("{{ 1e20 }}|{{ 0.0001 }}|{{ 1e-5 }}|{{ 2 ** 10 }}"), "1e+20|0.0001|1e-05|1024");
  EXPECT_EQ(Render("{{ 'a\\tb\\n' ~ \"q\\\"\" }}"), "a\tb\nq\"");
  EXPECT_EQ(Render("{{ [1, 'a', none] }}|{{ {'k': 'v', 'n': 1} }}"),
            "[1, 'a', None]|{'k': 'v', 'n': 1}");
  EXPECT_EQ(Render("{{ 'it\\'s' ~ 1 }}|{{ ['it\\'s'] }}"), "it's1|[\"it's\"]");
}

TEST(ChatTemplateTest, UndefinedIsEmptyAndFalsy) {
  EXPECT_EQ(Render("[{{ missing }}]{% if missing %}x{% else %}y{% endif %}"), "[]y");
  EXPECT_EQ(Render("{{ m.content is defined }}|{{ m.other is defined }}|{{ m.other is undefined }}",
                   {{"m", {{"content", "c"}}}}),
            "True|False|True");
  EXPECT_EQ(Render("{{ missing | default('d') }}|{{ '' | default('d', true) }}"), "d|d");
  EXPECT_FALSE(RenderStatus("{{ missing + 'x' }}").ok());
  EXPECT_FALSE(RenderStatus("{{ missing.attr }}").ok());
  EXPECT_EQ(Render("{% for x in missing %}a{% else %}empty{% endfor %}"), "empty");
}

TEST(ChatTemplateTest, AttributeItemAndSliceAccess) {
  Json ctx = {{"m", {{"role", "user"}, {"content", "hello"}}}, {"xs", {1, 2, 3, 4}}};
  EXPECT_EQ(Render("{{ m.role }}{{ m['content'] }}", ctx), "userhello");
  EXPECT_EQ(
      Render("{{ xs[-1] }}{{ xs[0] }}{{ xs[1:] }}{{ xs[::-1] }}{{ xs[:2] }}{{ xs[10] }}", ctx),
      "41[2, 3, 4][4, 3, 2, 1][1, 2]");
  EXPECT_EQ(Render("{{ 'héllo'[1] }}{{ 'héllo'[::-1] }}{{ 'abc'[-2:] }}"), "éolléhbc");
  EXPECT_EQ(Render("{{ none.attr is defined }}"), "False");
}

TEST(ChatTemplateTest, IfElifElseAndOperators) {
  const std::string t = "{% if x > 2 %}big{% elif x == 2 %}two{% else %}small{% endif %}";
  EXPECT_EQ(Render(t, {{"x", 3}}), "big");
  EXPECT_EQ(Render(t, {{"x", 2}}), "two");
  EXPECT_EQ(Render(t, {{"x", 1}}), "small");
  EXPECT_EQ(Render("{{ 'a' in 'cat' }}{{ 'z' not in ['a'] }}{{ 'k' in {'k': 1} }}{{ not 1 }}"),
            "TrueTrueTrueFalse");
  EXPECT_EQ(Render("{{ 0 or 'x' }}|{{ 1 and 'y' }}|{{ 'a' if false else 'b' }}|{{ 'a' if false }}"),
            "x|y|b|");
  EXPECT_EQ(Render("{{ 1 < 2 < 3 }}{{ 3 < 2 < 4 }}{{ 1 == 1.0 }}{{ true == 1 }}"),
            "TrueFalseTrueTrue");
  EXPECT_FALSE(RenderStatus("{{ 'a' in none }}").ok());
  EXPECT_FALSE(RenderStatus("{{ 1 < 'a' }}").ok());
}

TEST(ChatTemplateTest, ForLoopVariablesUnpackingAndControl) {
  EXPECT_EQ(Render("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                   "{{ x }}{% if loop.first %}F{% endif %}{% if loop.last %}L{{ loop.length }}"
                   "{% endif %};{% endfor %}"),
            "103aF;212b;321cL3;");
  EXPECT_EQ(Render("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}",
                   {{"d", {{"z", 1}, {"a", 2}}}}),
            "z=1,a=2,");
  EXPECT_EQ(Render("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
                   "{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "0134");
  EXPECT_EQ(Render("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"),
            "2242");
  EXPECT_EQ(Render("{% for x in [] %}a{% else %}none{% endfor %}"), "none");
}

TEST(ChatTemplateTest, SetScopingAndNamespace) {
  EXPECT_EQ(Render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(Render("{% set ns = namespace(x=1) %}{% for i in [1,2] %}{% set ns.x = ns.x + i %}"
                   "{% endfor %}{{ ns.x }}"),
            "4");
  EXPECT_EQ(Render("{% if true %}{% set y = 'in-if' %}{% endif %}{{ y }}"), "in-if");
  EXPECT_EQ(Render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(Render("{% set block %}x{{ 1 }}{% endset %}[{{ block }}]"), "[x1]");
  EXPECT_FALSE(RenderStatus("{% set s = 'str' %}{% set s.x = 1 %}").ok());
}

TEST(ChatTemplateTest, WhitespaceControlTrimAndLstripBlocks) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(Render("a\n  {% if true %}\n  b\n  {% endif %}\nc\n"), "a\n  b\nc");
  EXPECT_EQ(Render("x  {{- ' y ' -}}  z"), "x y z");
  EXPECT_EQ(Render("a\n{%- if true -%}\n\n b {%- endif %}"), "ab");
  EXPECT_EQ(Render("a {#- comment -#} b"), "ab");
  EXPECT_EQ(Render("  {# c #}\nx"), "x");
  EXPECT_EQ(Render("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(Render("{% if true +%}\nx{% endif %}"), "\nx");
  EXPECT_EQ(Render("{{ 'v' }}\nline"), "v\nline");  // no trim after variables
  EXPECT_EQ(Render("{% raw %}{{ not rendered }}{% endraw %}"), "{{ not rendered }}");
  EXPECT_EQ(Render("a\r\nb\r\n"), "a\nb");  // newlines normalised, one trailing newline dropped
}

TEST(ChatTemplateTest, Filters) {
  Json ctx = {
      {"msgs",
       {{{"role", "user"}, {"n", 1}}, {{"role", "bot"}, {"n", 2}}, {{"role", "user"}, {"n", 3}}}}};
  EXPECT_EQ(Render("{{ '  x  ' | trim }}|{{ 'abc' | length }}|{{ [1,2] | count }}|{{ 'a' | upper }}"
                   "|{{ 'AbC' | lower }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}"),
            "x|3|2|A|abc|Hello World|Hello");
  EXPECT_EQ(Render("{{ ['a','b'] | join(', ') }}|{{ [3,1] | first }}{{ [3,1] | last }}"
                   "|{{ 'aXbX' | replace('X', '-') }}|{{ [1,1,2] | unique | list }}"
                   "|{{ [1,2] | reverse | list }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}"
                   "|{{ '42' | int + 1 }}|{{ 3 | string ~ 'x' }}|{{ 1 | safe }}"),
            "a, b|31|a-b-|[1, 2]|[2, 1]|3|2.57|43|3x|1");
  EXPECT_EQ(Render("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='n') | list }}"
                   "{{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}"
                   "{{ [1, none, 2] | select('none') | list }}{{ ['a','b'] | reject('equalto', "
                   "'a') | list }}",
                   ctx),
            "[1, 3]1[None]['b']");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': 2} | dictsort }}|{{ {'b': 1} | items | list }}"),
            "[['a', 2], ['b', 1]]|[['b', 1]]");
  const Json nested = {{"x", {{"b", {1, 2.5, "é\"\n"}}, {"a", nullptr}, {"t", true}}}};
  EXPECT_EQ(Render("{{ x | tojson }}", nested),
            "{\"b\": [1, 2.5, \"é\\\"\\n\"], \"a\": null, \"t\": true}");
  const Json indented = {{"x", {{"a", Json::array()}, {"b", {1}}}}};
  EXPECT_EQ(Render("{{ x | tojson(indent=2) }}", indented),
            "{\n  \"a\": [],\n  \"b\": [\n    1\n  ]\n}");
}

TEST(ChatTemplateTest, TestsAndMethods) {
  EXPECT_EQ(Render("{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}"
                   "{{ 1 is number }}{{ true is boolean }}{{ none is none }}{{ 1 is not none }}"
                   "{{ false is false }}{{ 0 is false }}{{ 3 is odd }}{{ 4 is divisibleby 2 }}"),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrue");
  EXPECT_EQ(
      Render("{{ '  ab \\n'.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a\\n\\n'.rstrip('\\n') }}"
             "|{{ 'a,b,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ ' a  b '.split() }}"
             "|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}"
             "|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abc'.find('c') }}|{{ 'Ab'.upper() }}"),
      "ab|axx|a|['a', 'b', 'c']|['a', 'b,c']|['a', 'b']|TrueTrue|bba|2|AB");
  EXPECT_EQ(
      Render("{{ d.get('a') }}{{ d.get('z', 'dflt') }}{{ d.keys() | list }}{{ d.values() | list }}",
             {{"d", {{"a", 1}}}}),
      "1dflt['a'][1]");
  EXPECT_EQ(
      Render("{{ s.split('</think>')[-1].lstrip('\\n') }}", {{"s", "<think>r</think>\n\nans"}}),
      "ans");
}

TEST(ChatTemplateTest, StrftimeNowUsesTheGivenTime) {
  auto parsed = ChatTemplate::Parse("{{ strftime_now('%d %b %Y') }}");
  ASSERT_TRUE(parsed.ok());
  EvalOptions options;
  std::tm now{};
  now.tm_year = 124;
  now.tm_mon = 6;
  now.tm_mday = 26;
  options.now = now;
  auto out = parsed->Render(Json::object(), options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "26 Jul 2024");
}

TEST(ChatTemplateTest, SyntaxErrorsReportLineAndColumn) {
  absl::Status s = RenderStatus("line one\n{% if x %}\n  {{ x + }}\n{% endif %}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("line 3, column"), std::string::npos) << s;
  s = RenderStatus("{% for x in xs %}no end");
  EXPECT_NE(std::string(s.message()).find("endfor"), std::string::npos) << s;
  s = RenderStatus("ok\n  {{ 'unterminated }}");
  EXPECT_NE(std::string(s.message()).find("line 2, column 6"), std::string::npos) << s;
  EXPECT_EQ(RenderStatus("{% include 'other.jinja' %}").code(), absl::StatusCode::kInvalidArgument);
  s = RenderStatus("{% macro m(a=1, b) %}{% endmacro %}");
  EXPECT_NE(std::string(s.message()).find("non-default argument follows default argument"),
            std::string::npos)
      << s;
  EXPECT_EQ(RenderStatus("{% macro m(a, a) %}{% endmacro %}").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus("{% call 'x' %}{% endcall %}").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus("{% macro m() %}no end").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus("{{ x ").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus("{# open comment").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus(std::string(500, '(')).code(), absl::StatusCode::kOk);  // plain text
  EXPECT_EQ(RenderStatus("{{ " + std::string(5000, '(') + " }}").code(),
            absl::StatusCode::kInvalidArgument);  // nesting bound, no stack overflow
}

// Expected outputs are jinja2 3.1.6's (ImmutableSandboxedEnvironment, trim/lstrip blocks).
TEST(ChatTemplateTest, MacroArguments) {
  EXPECT_EQ(Render("{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, "
                   "{{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }}|{{ greet('Bob', 'Hi') }}"
                   "|{{ greet(punct='?', name='Cy') }}|{{ greet() }}"),
            "Hello, Ann!|Hi, Bob!|Hello, Cy?|Hello, !");
  // Defaults are evaluated at call time, in the macro's frame, so they may use earlier params.
  EXPECT_EQ(Render("{% macro m(a, b=a ~ '!') %}{{ b }}{% endmacro %}{{ m('x') }}"), "x!");
  // A macro's result is a string: methods and filters apply to it (GLM-4.6's visible_text).
  EXPECT_EQ(Render("{% macro m(s) %} {{ s }} {% endmacro %}{{ m('v').strip().upper() }}|"
                   "{{ m('v') | length }}"),
            "V|3");
  EXPECT_EQ(Render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n }}*{{ fact(n - 1) }}"
                   "{% endif %}{% endmacro %}{{ fact(4) }}"),
            "4*3*2*1");
  EXPECT_EQ(Render("{% macro m() %}{% endmacro %}{{ m }}"), "<Macro 'm'>");
  EXPECT_EQ(Render("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}"),
            "RENDER ERROR: chat template error at line 1, column 42: macro 'm' takes not more "
            "than 1 argument(s)");
  EXPECT_NE(Render("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}")
                .find("macro 'm' takes no keyword argument 'b'"),
            std::string::npos);
  EXPECT_NE(Render("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, a=2) }}")
                .find("macro 'm' takes no keyword argument 'a'"),
            std::string::npos);
}

TEST(ChatTemplateTest, MacroScoping) {
  // A macro sees top-level variables, not the loop variables or loop-local sets of its caller.
  EXPECT_EQ(Render("{% set top = 'T' %}{% macro m() %}{{ top }}/{{ x }}/{{ item }}{% endmacro %}"
                   "{% for item in [1] %}{% set x = 5 %}{{ m() }}{% endfor %}"),
            "T//");
  // Its own sets stay inside it; a namespace written inside it is the caller's namespace.
  EXPECT_EQ(Render("{% macro m() %}{% set inner = 1 %}x{% endmacro %}{{ m() }}"
                   "{{ inner is defined }}"),
            "xFalse");
  EXPECT_EQ(Render("{% set ns = namespace(n=0) %}{% macro bump() %}{% set ns.n = ns.n + 1 %}"
                   "{% endmacro %}{{ bump() }}{{ bump() }}{{ ns.n }}"),
            "2");
}

TEST(ChatTemplateTest, CallBlocks) {
  // caller() renders the call block's body where the call stands (it sees the loop variable).
  EXPECT_EQ(Render("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                   "{% for i in [1,2] %}{% call wrap('b') %}item {{ i }}{% endcall %}"
                   "{% endfor %}"),
            "<b>item 1</b><b>item 2</b>");
  EXPECT_EQ(Render("{% macro each(xs) %}{% for x in xs %}{{ caller(x, loop.index) }}{% endfor %}"
                   "{% endmacro %}{% call(v, n) each(['a','b']) %}{{ n }}={{ v }};{% endcall %}"),
            "1=a;2=b;");
}

// transformers' {% generation %} tag (LFM2.5, Laguna templates): the body prints in place and
// its sets stay inside it, as transformers 5.23 renders.
TEST(ChatTemplateTest, GenerationTagRendersItsBody) {
  EXPECT_EQ(Render("{% for m in messages %}{% generation %}{% set x = m.role %}[{{ m.role }}]"
                   "{% endgeneration %}{% endfor %}{{ x is defined }}",
                   Json::parse(R"({"messages": [{"role": "a"}, {"role": "b"}]})")),
            "[a][b]False");
}

TEST(ChatTemplateTest, UnboundedMacroRecursionFails) {
  // jinja2 raises RecursionError; here a depth bound fails the render before the stack does.
  const absl::Status s =
      RenderStatus("{% macro rec(n) %}{{ rec(n + 1) }}{% endmacro %}{{ rec(0) }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
}

TEST(ChatTemplateTest, RenderChatAliasesReasoningAsTransformersDoes) {
  auto parsed = ChatTemplate::Parse(
      "{% for m in messages %}{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}|"
      "{% endfor %}");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Json messages = Json::parse(R"([
    {"role": "assistant", "content": "a", "reasoning_content": "r1"},
    {"role": "assistant", "content": "b", "reasoning": "r2"},
    {"role": "assistant", "thinking": "t3", "content": "c", "reasoning_content": null},
    {"role": "assistant", "content": null, "tool_calls": []}
  ])");
  auto out = RenderChat(*parsed, messages, ChatRenderOptions{});
  ASSERT_TRUE(out.ok()) << out.status();
  // {"thinking": r, **message, "reasoning_content": r} with r the first non-null of
  // reasoning_content, thinking, reasoning (transformers 5.23 renders exactly this text);
  // null-valued keys stay (content=None).
  EXPECT_EQ(*out,
            "thinking=r1;role=assistant;content=a;reasoning_content=r1;|"
            "thinking=r2;role=assistant;content=b;reasoning=r2;reasoning_content=r2;|"
            "thinking=t3;role=assistant;content=c;reasoning_content=t3;|"
            "role=assistant;content=None;tool_calls=[];|");
}

TEST(ChatTemplateTest, RuntimeErrors) {
  absl::Status s = RenderStatus("{{ raise_exception('Roles must alternate') }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "Roles must alternate");
  s = RenderStatus("\n{{ 1 | no_such_filter }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("no filter named 'no_such_filter'"), std::string::npos);
  EXPECT_NE(std::string(s.message()).find("line 2"), std::string::npos) << s;
  EXPECT_FALSE(RenderStatus("{{ 1 is no_such_test }}").ok());
  EXPECT_FALSE(RenderStatus("{{ 'a' + 1 }}").ok());
  EXPECT_FALSE(RenderStatus("{{ 1 // 0 }}").ok());
  EXPECT_FALSE(RenderStatus("{{ x | tojson }}").ok());  // undefined is not JSON serializable
}

TEST(ChatTemplateTest, RunawayTemplatesAreBounded) {
  EvalOptions options;
  options.limits.max_loop_iterations = 10000;
  options.limits.max_output_bytes = 1 << 16;
  EXPECT_EQ(
      RenderStatus("{% for i in range(100) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
                   Json::object(), options)
          .code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{% for i in range(100000000000) %}{% endfor %}", Json::object(), options)
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
                         "{% set ns.s = ns.s + ns.s %}{% endfor %}",
                         Json::object(), options)
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{{ 'x' * 1000000000 }}", Json::object(), options).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{% for i in range(5000) %}0123456789abcdef{% endfor %}", Json::object(),
                         options)
                .code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(ChatTemplateTest, RenderChatPassesTransformersVariables) {
  auto parsed = ChatTemplate::Parse(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ tools is none }}{{ documents is none "
      "}}"
      "{{ enable_thinking }}");
  ASSERT_TRUE(parsed.ok());
  ChatRenderOptions options;
  options.bos_token = "<s>";
  options.add_generation_prompt = true;
  options.extra_kwargs = {{"enable_thinking", false}};
  auto out = RenderChat(*parsed, Json::array({{{"role", "user"}, {"content", "hi"}}}), options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<s><user>hi<assistant>TrueTrueFalse");
  EXPECT_FALSE(RenderChat(*parsed, Json::object(), options).ok());
}

}  // namespace
}  // namespace expertmesh::chat
