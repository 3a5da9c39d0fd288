#include "router/structured_output.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/grammar/compose.h"
#include "model/grammar/engine/validate.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/json_schema.h"
#include "model/grammar/regex_grammar.h"
#include "router/output_constraint.h"
#include "router/request_validation.h"
#include "router/tool_call_grammar.h"

namespace expertmesh::router {
namespace {

using grammar::Expr;
using grammar::Grammar;
using Kind = OutputConstraint::Kind;

// Whitespace after </think>: the templates write "\n\n"; a few more are harmless, an unbounded
// run would let a model stall there.
constexpr int kMaxWhitespaceAfterThink = 4;

Expr Whitespace() {
  return Expr::Repeat(Expr::CharClass({{'\t', '\n'}, {'\r', '\r'}, {' ', ' '}}), 0,
                      kMaxWhitespaceAfterThink);
}

// A cache key part that cannot run into the next one.
std::string Part(const std::string& s) { return absl::StrCat(s.size(), ":", s); }

// The validated grammar as GBNF text.
absl::StatusOr<std::string> Finish(const Grammar& answer, ReasoningStart start) {
  const Grammar g = WithReasoning(answer, start);
  RETURN_IF_ERROR(grammar::ValidateGrammar(g));
  return grammar::PrintGbnf(g);
}

absl::Status WithParam(const absl::Status& s, const std::string& param, const std::string& field) {
  return InvalidParam(param, absl::StrCat(field, ": ", s.message()));
}

}  // namespace

absl::StatusOr<Grammar> ConstraintGrammar(const OutputConstraint& c) {
  switch (c.kind) {
    case Kind::kJsonSchema:
      return grammar::JsonSchemaToGrammar(c.text);
    case Kind::kJsonObject:
      return grammar::JsonObjectGrammar();
    case Kind::kRegex:
      return grammar::RegexToGrammar(c.text);
    case Kind::kChoice:
      return grammar::ChoiceGrammar(c.choices);
    case Kind::kGrammar:
      return grammar::ParseGbnf(c.text);
    case Kind::kNone:
      break;
  }
  return absl::InvalidArgumentError("no output constraint");
}

Grammar WithReasoning(const Grammar& answer, ReasoningStart start) {
  if (start == ReasoningStart::kNone) return answer;
  Grammar g;
  const Expr body = grammar::Embed(g, answer, "answer-");
  const Expr thought = grammar::TextThrough(g, kThinkEnd, "think-");
  Expr prefix =
      start == ReasoningStart::kInReasoning
          ? Expr::Sequence({thought, Whitespace()})
          : Expr::Repeat(
                Expr::Sequence({Expr::Literal(std::string(kThinkStart)), thought, Whitespace()}), 0,
                1);
  g.rules.insert(g.rules.begin(), {"root", Expr::Sequence({std::move(prefix), body})});
  g.root = "root";
  return g;
}

absl::StatusOr<std::string> StructuredOutputCompiler::GrammarText(
    const OutputConstraint& c, const PromptInput& input, ReasoningStart start,
    std::string_view chat_template) const {
  const bool chat = input.kind == PromptInput::Kind::kChat;
  const bool tools_required = chat && input.tools.has_value() &&
                              (input.tool_choice_required || !input.tool_choice_function.empty());
  const std::string reasoning = absl::StrCat(static_cast<int>(start));
  if (tools_required) {
    if (c.kind != Kind::kNone) {
      return InvalidParam("tool_choice",
                          absl::StrCat("'", c.field,
                                       "' cannot be combined with tool_choice 'required' or a "
                                       "named function: both constrain the whole output"));
    }
    const ToolCallFormat format = ToolCallFormatOf(chat_template);
    const ToolCallBody body = ToolCallBodyOf(format, chat_template);
    const ToolChoice choice{.kind = input.tool_choice_required ? ToolChoice::Kind::kRequired
                                                               : ToolChoice::Kind::kFunction,
                            .function = input.tool_choice_function};
    const std::string key = absl::StrCat(
        "tools|", reasoning, "|", static_cast<int>(format), "|", static_cast<int>(body), "|",
        static_cast<int>(choice.kind), "|", Part(choice.function), "|",
        Part(input.tools->dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)));
    absl::StatusOr<std::string> text =
        cache_.GetOrCompile(key, [&]() -> absl::StatusOr<std::string> {
          ASSIGN_OR_RETURN(Grammar g, ToolCallGrammar(format, body, *input.tools, choice));
          return Finish(g, start);
        });
    if (!text.ok()) {
      // Schema problems belong to `tools`; a template without a call format to tool_choice.
      const bool about_tools = absl::StartsWith(text.status().message(), "tools:");
      return InvalidParam(about_tools ? "tools" : "tool_choice", text.status().message());
    }
    return text;
  }
  if (c.kind == Kind::kNone) return std::string();
  std::string key =
      absl::StrCat(OutputConstraintKindName(c.kind), "|", reasoning, "|", Part(c.text));
  for (const std::string& choice : c.choices) absl::StrAppend(&key, "|", Part(choice));
  absl::StatusOr<std::string> text = cache_.GetOrCompile(key, [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(Grammar g, ConstraintGrammar(c));
    return Finish(g, start);
  });
  if (!text.ok()) {
    return WithParam(text.status(), c.field.substr(0, c.field.find('.')), c.field);
  }
  return text;
}

}  // namespace expertmesh::router
