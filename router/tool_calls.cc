#include "router/tool_calls.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "router/partial_marker.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kCallStart = "<tool_call>";
constexpr std::string_view kCallEnd = "</tool_call>";
constexpr std::string_view kDeepSeekCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDeepSeekCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDeepSeekCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDeepSeekCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDeepSeekSep = "<｜tool▁sep｜>";

struct Markers {
  std::string_view start, end;
  std::vector<std::string_view> dropped;  // markers around the calls, left out of the content
};

const Markers& MarkersOf(ToolCallFormat format) {
  static const Markers kHermesMarkers{kCallStart, kCallEnd, {}};
  static const Markers kDeepSeekMarkers{
      kDeepSeekCallBegin, kDeepSeekCallEnd, {kDeepSeekCallsBegin, kDeepSeekCallsEnd}};
  return format == ToolCallFormat::kDeepSeek ? kDeepSeekMarkers : kHermesMarkers;
}

// {"name": "...", "arguments": {...}} (Hermes; "parameters" as some models write it).
std::optional<ToolCall> ParseHermesCall(std::string_view body) {
  Json call = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!call.is_object()) return std::nullopt;
  const auto name = call.find("name");
  if (name == call.end() || !name->is_string() || name->get<std::string>().empty()) {
    return std::nullopt;
  }
  auto args = call.find("arguments");
  if (args == call.end()) args = call.find("parameters");
  ToolCall out;
  out.name = name->get<std::string>();
  if (args == call.end() || args->is_null()) {
    out.arguments = "{}";
  } else if (args->is_string()) {
    out.arguments = args->get<std::string>();  // already JSON text
  } else {
    out.arguments = args->dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (!s->starts_with(prefix)) return false;
  s->remove_prefix(prefix.size());
  return true;
}

bool ConsumeSuffix(std::string_view* s, std::string_view suffix) {
  if (!s->ends_with(suffix)) return false;
  s->remove_suffix(suffix.size());
  return true;
}

// The JSON-schema type of property `key` of function `name` in `tools` ("" when not given).
std::string PropertyType(const Json* tools, std::string_view name, const std::string& key) {
  const Json* f = FindToolFunction(tools, name);
  if (f == nullptr) return "";
  const auto params = f->find("parameters");
  if (params == f->end() || !params->is_object()) return "";
  const auto props = params->find("properties");
  if (props == params->end() || !props->is_object()) return "";
  const auto prop = props->find(key);
  if (prop == props->end() || !prop->is_object()) return "";
  const auto type = prop->find("type");
  return type != prop->end() && type->is_string() ? type->get<std::string>() : "";
}

// An XML-style value as JSON: text, unless the schema types it otherwise and it parses so.
Json TypedValue(std::string_view text, const std::string& type) {
  if (type.empty() || type == "string") return Json(std::string(text));
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  const bool fits = (type == "integer" && parsed.is_number_integer()) ||
                    (type == "number" && parsed.is_number()) ||
                    (type == "boolean" && parsed.is_boolean()) ||
                    (type == "object" && parsed.is_object()) ||
                    (type == "array" && parsed.is_array()) || (type == "null" && parsed.is_null());
  return fits ? parsed : Json(std::string(text));
}

// The text between `open` and `close` starting the search at *pos, which moves past `close`.
std::optional<std::string_view> Between(std::string_view s, std::string_view open,
                                        std::string_view close, size_t* pos) {
  const size_t a = s.find(open, *pos);
  if (a == std::string_view::npos) return std::nullopt;
  const size_t b = s.find(close, a + open.size());
  if (b == std::string_view::npos) return std::nullopt;
  *pos = b + close.size();
  return s.substr(a + open.size(), b - a - open.size());
}

// A value between tags, less the one newline the templates put on each side.
std::string_view StripNewlines(std::string_view v) {
  if (v.starts_with('\n')) v.remove_prefix(1);
  if (v.ends_with('\n')) v.remove_suffix(1);
  return v;
}

// <function=NAME><parameter=KEY>VALUE</parameter>...</function> (Qwen3-Coder, Qwen3.5).
std::optional<ToolCall> ParseFunctionTagCall(std::string_view body, const Json* tools) {
  body = Trim(body);
  if (!body.starts_with("<function=") || !body.ends_with("</function>")) return std::nullopt;
  const size_t name_end = body.find('>');
  if (name_end + 1 > body.size() - 11) return std::nullopt;  // no '>' before </function>
  ToolCall out;
  out.name = std::string(Trim(body.substr(10, name_end - 10)));
  if (out.name.empty()) return std::nullopt;
  std::string_view params = body.substr(name_end + 1, body.size() - 11 - name_end - 1);
  Json args = Json::object();
  size_t pos = 0;
  while (true) {
    const size_t open = params.find("<parameter=", pos);
    if (open == std::string_view::npos) break;
    const size_t key_end = params.find('>', open);
    const size_t close = params.find("</parameter>", open);
    if (key_end == std::string_view::npos || close == std::string_view::npos || close < key_end) {
      return std::nullopt;
    }
    const std::string key(Trim(params.substr(open + 11, key_end - open - 11)));
    const std::string_view value = StripNewlines(params.substr(key_end + 1, close - key_end - 1));
    args[key] = TypedValue(value, PropertyType(tools, out.name, key));
    pos = close + 12;
  }
  if (!Trim(params.substr(pos)).empty()) return std::nullopt;
  out.arguments = args.dump(-1, ' ', false, Json::error_handler_t::replace);
  return out;
}

// NAME<arg_key>KEY</arg_key><arg_value>VALUE</arg_value>... (GLM-4.5, GLM-4.6).
std::optional<ToolCall> ParseArgKeyCall(std::string_view body, const Json* tools) {
  body = Trim(body);
  const size_t first = body.find("<arg_key>");
  ToolCall out;
  out.name = std::string(Trim(body.substr(0, first)));
  if (out.name.empty() || out.name.find_first_of("<>{}\n ") != std::string::npos) {
    return std::nullopt;
  }
  Json args = Json::object();
  size_t pos = first == std::string_view::npos ? body.size() : first;
  while (pos < body.size()) {
    std::optional<std::string_view> key = Between(body, "<arg_key>", "</arg_key>", &pos);
    std::optional<std::string_view> value = Between(body, "<arg_value>", "</arg_value>", &pos);
    if (!key.has_value() || !value.has_value()) return std::nullopt;
    const std::string k(Trim(*key));
    args[k] = TypedValue(StripNewlines(*value), PropertyType(tools, out.name, k));
    const size_t next = body.find("<arg_key>", pos);
    if (!Trim(
             body.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos))
             .empty()) {
      return std::nullopt;
    }
    pos = next == std::string_view::npos ? body.size() : next;
  }
  out.arguments = args.dump(-1, ' ', false, Json::error_handler_t::replace);
  return out;
}

// A JSON object as compact text, or nullopt.
std::optional<std::string> ObjectText(std::string_view text) {
  const Json args = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!args.is_object()) return std::nullopt;
  return args.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// [function<｜tool▁sep｜>]name, then the arguments: after a newline in a ```json fence (V3,
// R1-0528), or right after the separator (V3.1).
std::optional<ToolCall> ParseDeepSeekCall(std::string_view body) {
  const size_t sep = body.find(kDeepSeekSep);
  if (sep == std::string_view::npos) return std::nullopt;
  std::string_view head = Trim(body.substr(0, sep));
  std::string_view rest = body.substr(sep + kDeepSeekSep.size());
  ToolCall out;
  if (head == "function") {
    const size_t newline = rest.find('\n');
    if (newline == std::string_view::npos) return std::nullopt;
    out.name = std::string(Trim(rest.substr(0, newline)));
    rest = Trim(rest.substr(newline + 1));
    if (ConsumePrefix(&rest, "```")) {
      ConsumePrefix(&rest, "json");
      if (!ConsumeSuffix(&rest, "```")) return std::nullopt;
    }
  } else {
    out.name = std::string(head);
  }
  std::optional<std::string> args = ObjectText(Trim(rest));
  if (out.name.empty() || !args.has_value()) return std::nullopt;
  out.arguments = *std::move(args);
  return out;
}

// The end (one past the closing brace) of the JSON object that starts at s[start] == '{',
// braces inside strings skipped; npos when it does not close.
size_t ObjectEnd(std::string_view s, size_t start) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

constexpr std::string_view kPythonTag = "<|python_tag|>";

// A whole Llama 3 output as calls: {"name", "parameters"} objects joined by ";" (vLLM's
// llama3_json), after an optional <|python_tag|>. nullopt when any part is not a call.
std::optional<std::vector<ToolCall>> ParseLlamaCalls(std::string_view text) {
  text = Trim(text);
  if (ConsumePrefix(&text, kPythonTag)) text = Trim(text);
  std::vector<ToolCall> calls;
  while (!text.empty()) {
    if (text.front() != '{') return std::nullopt;
    const size_t end = ObjectEnd(text, 0);
    if (end == std::string_view::npos) return std::nullopt;
    std::optional<ToolCall> call = ParseHermesCall(text.substr(0, end));
    if (!call.has_value()) return std::nullopt;
    calls.push_back(*std::move(call));
    text = Trim(text.substr(end));
    if (!text.empty() && !ConsumePrefix(&text, ";")) return std::nullopt;
    text = Trim(text);
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

}  // namespace

const Json* FindToolFunction(const Json* tools, std::string_view name) {
  if (tools == nullptr || !tools->is_array()) return nullptr;
  for (const Json& tool : *tools) {
    const auto f = tool.find("function");
    if (f != tool.end() && f->is_object() && f->value("name", std::string()) == name) return &*f;
  }
  return nullptr;
}

ToolCallFormat ToolCallFormatOf(std::string_view chat_template) {
  if (chat_template.find("tool▁call▁begin") != std::string_view::npos) {
    return ToolCallFormat::kDeepSeek;
  }
  if (chat_template.find(kCallStart) != std::string_view::npos) return ToolCallFormat::kHermes;
  // Llama 3.1-3.3: "Respond in the format {"name": function name, "parameters": ...}", tool
  // results in `ipython` turns.
  if (chat_template.find("\"parameters\"") != std::string_view::npos &&
      chat_template.find("ipython") != std::string_view::npos) {
    return ToolCallFormat::kLlama3Json;
  }
  return ToolCallFormat::kNone;
}

absl::StatusOr<ToolChoice> ParseToolChoice(const Json* tool_choice, const Json* tools) {
  if (tool_choice == nullptr || tool_choice->is_null()) return ToolChoice{};
  const bool have_tools = tools != nullptr && tools->is_array() && !tools->empty();
  if (tool_choice->is_string()) {
    const std::string choice = tool_choice->get<std::string>();
    if (choice == "none") return ToolChoice{.kind = ToolChoice::Kind::kNone};
    if (choice == "auto") return ToolChoice{};
    if (choice == "required") {
      if (!have_tools) return absl::InvalidArgumentError("tool_choice 'required' needs 'tools'");
      return ToolChoice{.kind = ToolChoice::Kind::kRequired};
    }
    return absl::InvalidArgumentError(
        absl::StrCat("tool_choice '", choice, "' is not one of none, auto, required"));
  }
  if (tool_choice->is_object()) {
    const Json* function = nullptr;
    if (auto f = tool_choice->find("function"); f != tool_choice->end() && f->is_object()) {
      function = &*f;
    }
    const auto name = function != nullptr ? function->find("name") : tool_choice->end();
    if (function == nullptr || name == function->end() || !name->is_string()) {
      return absl::InvalidArgumentError(
          "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": "
          "{\"name\": ...}}");
    }
    if (FindToolFunction(tools, name->get<std::string>()) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tool_choice names the function '", name->get<std::string>(), "', which tools lacks"));
    }
    return ToolChoice{.kind = ToolChoice::Kind::kFunction, .function = name->get<std::string>()};
  }
  return absl::InvalidArgumentError("tool_choice must be a string or an object");
}

ToolCallSplitter::Parts ToolCallSplitter::Feed(std::string_view text) {
  Parts out;
  if (format_ == ToolCallFormat::kNone) {
    out.content = text;
    return out;
  }
  pending_.append(text);
  Drain(out, /*final=*/false);
  return out;
}

ToolCallSplitter::Parts ToolCallSplitter::Finish() {
  Parts out;
  if (format_ == ToolCallFormat::kLlama3Json) {
    DrainLlama(out, /*final=*/true);
    return out;
  }
  Drain(out, /*final=*/true);
  if (in_call_) {
    out.content.append(MarkersOf(format_).start);
    in_call_ = false;
  }
  out.content.append(pending_);
  pending_.clear();
  return out;
}

// Llama's calls are the whole output: one that starts (after whitespace) with "{" or
// <|python_tag|> is held to the end; anything else is content as it comes.
void ToolCallSplitter::DrainLlama(Parts& out, bool final) {
  if (!content_only_) {
    const std::string_view head = Trim(pending_);
    const bool may_call = head.empty() || head.front() == '{' || head.starts_with(kPythonTag) ||
                          kPythonTag.starts_with(head);
    if (may_call && !final) return;
    if (may_call) {
      if (std::optional<std::vector<ToolCall>> calls = ParseLlamaCalls(pending_)) {
        out.calls = *std::move(calls);
        pending_.clear();
        return;
      }
    }
    content_only_ = true;
  }
  out.content.append(pending_);
  pending_.clear();
}

void ToolCallSplitter::Drain(Parts& out, bool final) {
  if (format_ == ToolCallFormat::kLlama3Json) return DrainLlama(out, final);
  const Markers& m = MarkersOf(format_);
  for (;;) {
    if (!in_call_) {
      // The first marker in the text: a call's start, or one that is dropped.
      size_t at = pending_.find(m.start);
      std::string_view marker = m.start;
      for (std::string_view dropped : m.dropped) {
        const size_t d = pending_.find(dropped);
        if (d < at) {
          at = d;
          marker = dropped;
        }
      }
      if (at == std::string::npos) {
        size_t keep = 0;
        if (!final) {
          keep = PartialMarkerSuffix(pending_, m.start);
          for (std::string_view dropped : m.dropped) {
            keep = std::max(keep, PartialMarkerSuffix(pending_, dropped));
          }
        }
        out.content.append(pending_, 0, pending_.size() - keep);
        pending_.erase(0, pending_.size() - keep);
        return;
      }
      out.content.append(pending_, 0, at);
      pending_.erase(0, at + marker.size());
      in_call_ = marker == m.start;
      continue;
    }
    const size_t end = pending_.find(m.end);
    if (end == std::string::npos) return;  // the block is not closed yet
    const std::string_view body = std::string_view(pending_).substr(0, end);
    std::optional<ToolCall> call;
    if (format_ == ToolCallFormat::kDeepSeek) {
      call = ParseDeepSeekCall(body);
    } else {
      call = ParseHermesCall(body);
      if (!call.has_value()) call = ParseFunctionTagCall(body, tools_);
      if (!call.has_value()) call = ParseArgKeyCall(body, tools_);
    }
    if (call.has_value()) {
      out.calls.push_back(*std::move(call));
    } else {
      out.content.append(m.start).append(body).append(m.end);
    }
    pending_.erase(0, end + m.end.size());
    in_call_ = false;
  }
}

}  // namespace expertmesh::router
