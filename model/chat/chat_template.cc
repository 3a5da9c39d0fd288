#include "model/chat/chat_template.h"

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/chat/lexer.h"
#include "model/chat/parser.h"

namespace expertmesh::chat {

struct ChatTemplate::Parsed {
  std::string source;  // normalised source; error positions refer to it
  Body body;
};

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string_view source) {
  ASSIGN_OR_RETURN(LexResult lexed, Lex(source));
  ASSIGN_OR_RETURN(Body body, chat::Parse(lexed));
  auto parsed = std::make_shared<Parsed>();
  parsed->source = std::move(lexed.source);
  parsed->body = std::move(body);
  return ChatTemplate(std::move(parsed));
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& context,
                                                 const EvalOptions& options) const {
  if (!context.is_object()) {
    return absl::InvalidArgumentError("chat template context must be a JSON object");
  }
  return Evaluate(parsed_->body, parsed_->source, Value::FromJson(context), options);
}

namespace {

// transformers' _alias_reasoning_fields: a message whose reasoning_content, thinking or reasoning
// (the first of them that is present and not null) carries its reasoning gets it under
// `thinking` (which gpt-oss reads) and `reasoning_content` (which Qwen3, GLM, MiniMax read).
// Python builds {"thinking": r, **message, "reasoning_content": r}, so `thinking` comes first
// unless the message has its own, and `reasoning_content` keeps its place or goes last.
nlohmann::ordered_json AliasReasoningFields(const nlohmann::ordered_json& messages) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& message : messages) {
    const nlohmann::ordered_json* reasoning = nullptr;
    if (message.is_object()) {
      for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
        auto it = message.find(key);
        if (it != message.end() && !it->is_null()) {
          reasoning = &*it;
          break;
        }
      }
    }
    if (reasoning == nullptr) {
      out.push_back(message);
      continue;
    }
    nlohmann::ordered_json aliased = nlohmann::ordered_json::object();
    aliased["thinking"] = *reasoning;
    for (const auto& [k, v] : message.items()) aliased[k] = v;
    aliased["reasoning_content"] = *reasoning;
    out.push_back(std::move(aliased));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat_template,
                                       const nlohmann::ordered_json& messages,
                                       const ChatRenderOptions& options) {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  if (!options.extra_kwargs.is_object()) {
    return absl::InvalidArgumentError("extra_kwargs must be a JSON object");
  }
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = AliasReasoningFields(messages);
  context["tools"] = options.tools.value_or(nullptr);
  context["documents"] = nullptr;
  context["add_generation_prompt"] = options.add_generation_prompt;
  context["bos_token"] = options.bos_token;
  context["eos_token"] = options.eos_token;
  for (const auto& [k, v] : options.extra_kwargs.items()) context[k] = v;
  EvalOptions eval;
  eval.limits = options.limits;
  eval.now = options.now;
  return chat_template.Render(context, eval);
}

}  // namespace expertmesh::chat
