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

absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat_template,
                                       const nlohmann::ordered_json& messages,
                                       const ChatRenderOptions& options) {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  if (!options.extra_kwargs.is_object()) {
    return absl::InvalidArgumentError("extra_kwargs must be a JSON object");
  }
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
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
