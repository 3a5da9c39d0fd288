#include "router/tool_calls.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kCallStart = "<tool_call>";
constexpr std::string_view kCallEnd = "</tool_call>";

// The length of the longest suffix of `text` that is a proper prefix of `tag`.
size_t PartialTagSuffix(std::string_view text, std::string_view tag) {
  for (size_t len = std::min(text.size(), tag.size() - 1); len > 0; --len) {
    if (text.substr(text.size() - len) == tag.substr(0, len)) return len;
  }
  return 0;
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

}  // namespace

ToolCallFormat ToolCallFormatOf(std::string_view chat_template) {
  return chat_template.find(kCallStart) != std::string_view::npos ? ToolCallFormat::kHermes
                                                                  : ToolCallFormat::kNone;
}

absl::StatusOr<ToolChoice> ParseToolChoice(const Json* tool_choice, const Json* tools) {
  if (tool_choice == nullptr || tool_choice->is_null()) return ToolChoice::kAuto;
  if (tool_choice->is_string()) {
    const std::string choice = tool_choice->get<std::string>();
    if (choice == "none") return ToolChoice::kNone;
    if (choice == "auto") return ToolChoice::kAuto;
    if (choice == "required") {
      return absl::InvalidArgumentError(
          "tool_choice 'required' needs constrained decoding, which this server does not offer "
          "yet; use 'auto'");
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
    bool known = false;
    if (tools != nullptr && tools->is_array()) {
      for (const Json& tool : *tools) {
        auto f = tool.find("function");
        if (f != tool.end() && f->is_object() && f->value("name", std::string()) == *name) {
          known = true;
        }
      }
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tool_choice names the function '", name->get<std::string>(), "', which tools lacks"));
    }
    return absl::InvalidArgumentError(
        "tool_choice naming a function needs constrained decoding, which this server does not "
        "offer yet; use 'auto'");
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
  Drain(out, /*final=*/true);
  if (in_call_) {
    out.content.append(kCallStart);
    in_call_ = false;
  }
  out.content.append(pending_);
  pending_.clear();
  return out;
}

void ToolCallSplitter::Drain(Parts& out, bool final) {
  for (;;) {
    if (!in_call_) {
      const size_t start = pending_.find(kCallStart);
      if (start == std::string::npos) {
        const size_t keep = final ? 0 : PartialTagSuffix(pending_, kCallStart);
        out.content.append(pending_, 0, pending_.size() - keep);
        pending_.erase(0, pending_.size() - keep);
        return;
      }
      out.content.append(pending_, 0, start);
      pending_.erase(0, start + kCallStart.size());
      in_call_ = true;
      continue;
    }
    const size_t end = pending_.find(kCallEnd);
    if (end == std::string::npos) return;  // the block is not closed yet
    const std::string_view body = std::string_view(pending_).substr(0, end);
    if (std::optional<ToolCall> call = ParseHermesCall(body)) {
      out.calls.push_back(*std::move(call));
    } else {
      out.content.append(kCallStart).append(body).append(kCallEnd);
    }
    pending_.erase(0, end + kCallEnd.size());
    in_call_ = false;
  }
}

}  // namespace expertmesh::router
