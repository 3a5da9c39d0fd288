#include "router/tool_call_grammar.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/grammar/compose.h"
#include "model/grammar/json_schema.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;
using grammar::Expr;
using grammar::Grammar;

constexpr char kCallsBegin[] = "<｜tool▁calls▁begin｜>";
constexpr char kCallsEnd[] = "<｜tool▁calls▁end｜>";
constexpr char kCallBegin[] = "<｜tool▁call▁begin｜>";
constexpr char kCallEnd[] = "<｜tool▁call▁end｜>";
constexpr char kSep[] = "<｜tool▁sep｜>";

std::string Quoted(const std::string& s) {
  return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

absl::Status FunctionError(const std::string& name, const std::string& what,
                           const absl::Status& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("tools: function '", name, "' ", what, ": ", why.message()));
}

// The grammar of a JSON schema given as a JSON value; an absent schema is any object (OpenAI:
// a function without parameters takes an empty or free-form object).
absl::StatusOr<Grammar> SchemaGrammar(const Json* schema) {
  if (schema == nullptr || schema->is_null()) return grammar::JsonObjectGrammar();
  return grammar::JsonSchemaToGrammar(schema->dump(-1, ' ', false, Json::error_handler_t::replace));
}

// What one call of a function is built from.
struct Function {
  std::string name;
  const Json* parameters = nullptr;  // the JSON schema, or nullptr
  std::string prefix;                // of every rule this function's grammar adds
};

// XML-style bodies: the parser (tool_calls.cc) keeps a value as text unless the schema types the
// property with a single non-string type name.
bool KeptAsText(const Json& property) {
  const auto type = property.find("type");
  return type == property.end() || !type->is_string() || *type == "string";
}

// A string property's minLength / maxLength as raw text of that many characters (code points,
// as JSON schema counts them) other than '<', so that the closing tag cannot start inside it;
// nullopt when the schema bounds neither. (pattern and format are not enforced on raw text.)
std::optional<Expr> LengthBoundedText(const Json& property) {
  const auto min = property.find("minLength");
  const auto max = property.find("maxLength");
  const bool has_min = min != property.end() && min->is_number_unsigned();
  const bool has_max = max != property.end() && max->is_number_unsigned();
  if (!has_min && !has_max) return std::nullopt;
  constexpr uint64_t kLimit = 1 << 20;  // beyond any answer; keeps the count an int32
  const auto count = [&](const Json& v) {
    return static_cast<int32_t>(std::min<uint64_t>(v.get<uint64_t>(), kLimit));
  };
  return Expr::Repeat(Expr::CharClass({{'<', '<'}}, /*negated=*/true), has_min ? count(*min) : 0,
                      has_max ? count(*max) : grammar::kUnbounded);
}

// The property's own schema with the root's definitions beside it, so "#/$defs/..." references
// still resolve once it stands alone.
Json PropertySchema(const Json& property, const Json& root) {
  Json out = property;
  for (const char* defs : {"$defs", "definitions"}) {
    if (root.contains(defs) && !out.contains(defs)) out[defs] = root[defs];
  }
  return out;
}

// One XML-style argument: `open` VALUE `close`, the value as text (through `close`) or as JSON.
absl::StatusOr<Expr> XmlArgument(Grammar& g, const Function& f, const std::string& key,
                                 const Json& property, const std::string& open,
                                 const std::string& close, const std::string& after,
                                 const std::string& prefix) {
  std::vector<Expr> items = {Expr::Literal(open)};
  if (KeptAsText(property)) {
    const auto values = property.find("enum");
    bool all_strings = values != property.end() && values->is_array() && !values->empty();
    if (all_strings) {
      for (const Json& v : *values) all_strings = all_strings && v.is_string();
    }
    const auto constant = property.find("const");
    std::optional<Expr> bounded = LengthBoundedText(property);
    if (all_strings) {
      std::vector<Expr> choices;
      for (const Json& v : *values) choices.push_back(Expr::Literal(v.get<std::string>()));
      items.push_back(Expr::Choice(std::move(choices)));
      items.push_back(Expr::Literal(close));
    } else if (constant != property.end() && constant->is_string()) {
      items.push_back(Expr::Literal(constant->get<std::string>()));
      items.push_back(Expr::Literal(close));
    } else if (bounded.has_value()) {
      items.push_back(*std::move(bounded));
      items.push_back(Expr::Literal(close));
    } else {
      // Any text up to the first closing tag, which the parser stops at too.
      items.push_back(grammar::TextThrough(g, close, prefix));
    }
  } else {
    const Json schema = PropertySchema(property, *f.parameters);
    absl::StatusOr<Grammar> value = SchemaGrammar(&schema);
    if (!value.ok()) {
      return FunctionError(f.name, absl::StrCat("parameter '", key, "'"), value.status());
    }
    items.push_back(grammar::Embed(g, *value, prefix));
    items.push_back(Expr::Literal(close));
  }
  items.push_back(Expr::Literal(after));
  return Expr::Sequence(std::move(items));
}

// The arguments of an XML-style call: the schema's properties in order, required ones always.
absl::StatusOr<Expr> XmlArguments(Grammar& g, const Function& f, ToolCallBody body) {
  std::vector<Expr> items;
  if (f.parameters == nullptr || !f.parameters->is_object()) return Expr::Sequence({});
  const auto props = f.parameters->find("properties");
  if (props == f.parameters->end() || !props->is_object()) return Expr::Sequence({});
  std::vector<std::string> required;
  if (const auto r = f.parameters->find("required"); r != f.parameters->end() && r->is_array()) {
    for (const Json& k : *r) {
      if (k.is_string()) required.push_back(k.get<std::string>());
    }
  }
  int index = 0;
  for (const auto& [key, property] : props->items()) {
    const std::string prefix = absl::StrCat(f.prefix, "p", index++, "-");
    const Json schema = property.is_object() ? property : Json::object();
    absl::StatusOr<Expr> arg =
        body == ToolCallBody::kFunctionTags
            ? XmlArgument(g, f, key, schema, absl::StrCat("<parameter=", key, ">\n"),
                          "\n</parameter>", "\n", prefix)
            : XmlArgument(g, f, key, schema,
                          absl::StrCat("<arg_key>", key, "</arg_key>\n<arg_value>"), "</arg_value>",
                          "\n", prefix);
    if (!arg.ok()) return arg.status();
    const bool is_required = std::find(required.begin(), required.end(), key) != required.end();
    items.push_back(is_required ? *std::move(arg) : Expr::Repeat(*std::move(arg), 0, 1));
  }
  return Expr::Sequence(std::move(items));
}

absl::StatusOr<Expr> JsonArguments(Grammar& g, const Function& f) {
  absl::StatusOr<Grammar> args = SchemaGrammar(f.parameters);
  if (!args.ok()) return FunctionError(f.name, "parameters", args.status());
  return grammar::Embed(g, *args, f.prefix);
}

// One call of `f`, markers and all.
absl::StatusOr<Expr> Call(Grammar& g, const Function& f, ToolCallBody body) {
  std::string open, close;
  absl::StatusOr<Expr> args;
  switch (body) {
    case ToolCallBody::kJson:
      open = absl::StrCat("<tool_call>\n{\"name\": ", Quoted(f.name), ", \"arguments\": ");
      close = "}\n</tool_call>";
      args = JsonArguments(g, f);
      break;
    case ToolCallBody::kFunctionTags:
      open = absl::StrCat("<tool_call>\n<function=", f.name, ">\n");
      close = "</function>\n</tool_call>";
      args = XmlArguments(g, f, body);
      break;
    case ToolCallBody::kArgKeys:
      open = absl::StrCat("<tool_call>", f.name, "\n");
      close = "</tool_call>";
      args = XmlArguments(g, f, body);
      break;
    case ToolCallBody::kDeepSeekFenced:
      open = absl::StrCat(kCallBegin, "function", kSep, f.name, "\n```json\n");
      close = absl::StrCat("\n```", kCallEnd);
      args = JsonArguments(g, f);
      break;
    case ToolCallBody::kDeepSeekPlain:
      open = absl::StrCat(kCallBegin, f.name, kSep);
      close = kCallEnd;
      args = JsonArguments(g, f);
      break;
    case ToolCallBody::kLlamaJson:
      open = absl::StrCat("{\"name\": ", Quoted(f.name), ", \"parameters\": ");
      close = "}";
      args = JsonArguments(g, f);
      break;
  }
  if (!args.ok()) return args.status();
  return Expr::Sequence({Expr::Literal(open), *std::move(args), Expr::Literal(close)});
}

// Between two calls of one answer.
std::string_view Separator(ToolCallBody body) {
  switch (body) {
    case ToolCallBody::kLlamaJson:
      return "; ";
    case ToolCallBody::kDeepSeekPlain:
      return "";
    default:
      return "\n";
  }
}

}  // namespace

ToolCallBody ToolCallBodyOf(ToolCallFormat format, std::string_view chat_template) {
  switch (format) {
    case ToolCallFormat::kDeepSeek:
      return chat_template.find("```json") != std::string_view::npos ? ToolCallBody::kDeepSeekFenced
                                                                     : ToolCallBody::kDeepSeekPlain;
    case ToolCallFormat::kLlama3Json:
      return ToolCallBody::kLlamaJson;
    case ToolCallFormat::kHermes:
    case ToolCallFormat::kNone:
      break;
  }
  if (chat_template.find("<function=") != std::string_view::npos) {
    return ToolCallBody::kFunctionTags;
  }
  if (chat_template.find("<arg_key>") != std::string_view::npos) return ToolCallBody::kArgKeys;
  return ToolCallBody::kJson;
}

absl::StatusOr<Grammar> ToolCallGrammar(ToolCallFormat format, ToolCallBody body, const Json& tools,
                                        const ToolChoice& choice) {
  if (format == ToolCallFormat::kNone) {
    return absl::InvalidArgumentError(
        "tool_choice 'required' or a named function needs a model whose chat template shows a "
        "tool-call format (Hermes <tool_call>, Qwen3-Coder, GLM, DeepSeek or Llama 3 JSON); this "
        "model's does not");
  }
  std::vector<Function> functions;
  if (tools.is_array()) {
    for (const Json& tool : tools) {
      const auto f = tool.find("function");
      if (f == tool.end() || !f->is_object()) continue;
      const auto name = f->find("name");
      if (name == f->end() || !name->is_string() || name->get<std::string>().empty()) {
        return absl::InvalidArgumentError("tools: every function needs a non-empty 'name'");
      }
      if (choice.kind == ToolChoice::Kind::kFunction && *name != choice.function) continue;
      const auto params = f->find("parameters");
      functions.push_back(
          {.name = name->get<std::string>(),
           .parameters = params != f->end() && !params->is_null() ? &*params : nullptr,
           .prefix = absl::StrCat("fn", functions.size(), "-")});
    }
  }
  if (functions.empty()) {
    return absl::InvalidArgumentError(
        choice.kind == ToolChoice::Kind::kFunction
            ? absl::StrCat("tool_choice names the function '", choice.function,
                           "', which tools lacks")
            : std::string("tool_choice 'required' needs at least one function in 'tools'"));
  }
  Grammar g;
  std::vector<Expr> calls;
  for (const Function& f : functions) {
    ASSIGN_OR_RETURN(Expr call, Call(g, f, body));
    calls.push_back(std::move(call));
  }
  g.rules.push_back({"call", calls.size() == 1 ? calls.front() : Expr::Choice(std::move(calls))});
  Expr answer = Expr::Ref("call");
  if (choice.kind == ToolChoice::Kind::kRequired) {
    // One or more calls: the templates join parallel calls this way.
    const std::string_view separator = Separator(body);
    Expr next = separator.empty()
                    ? Expr::Ref("call")
                    : Expr::Sequence({Expr::Literal(std::string(separator)), Expr::Ref("call")});
    answer =
        Expr::Sequence({Expr::Ref("call"), Expr::Repeat(std::move(next), 0, grammar::kUnbounded)});
  }
  if (body == ToolCallBody::kDeepSeekFenced || body == ToolCallBody::kDeepSeekPlain) {
    answer = Expr::Sequence({Expr::Literal(std::string(kCallsBegin)), std::move(answer),
                             Expr::Literal(std::string(kCallsEnd))});
  }
  g.rules.insert(g.rules.begin(), {"root", std::move(answer)});
  g.root = "root";
  return g;
}

}  // namespace expertmesh::router
