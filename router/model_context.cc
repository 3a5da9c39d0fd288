#include "router/model_context.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "model/config/model_config.h"
#include "model/plan/model_plan.h"
#include "router/chat_prompt.h"
#include "router/request_validation.h"

namespace expertmesh::router {
namespace {

// `messages` with every tool call's object arguments as compact JSON text; nullopt when no call
// has object arguments.
std::optional<nlohmann::ordered_json> ArgumentsAsText(const nlohmann::ordered_json& messages) {
  nlohmann::ordered_json out = messages;
  bool changed = false;
  for (nlohmann::ordered_json& m : out) {
    if (!m.is_object() || !m.contains("tool_calls") || !m["tool_calls"].is_array()) continue;
    for (nlohmann::ordered_json& call : m["tool_calls"]) {
      if (!call.is_object() || !call.contains("function")) continue;
      nlohmann::ordered_json& f = call["function"];
      if (f.is_object() && f.contains("arguments") && f["arguments"].is_object()) {
        f["arguments"] =
            f["arguments"].dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        changed = true;
      }
    }
  }
  if (!changed) return std::nullopt;
  return out;
}

// The roles every chat template this server meets is written for. A template cannot be asked
// which roles it handles: most render an unknown role as if it were a known one (a ChatML
// template prints "<|im_start|>wizard" as readily as "<|im_start|>user"), so the model sees a
// turn it was never trained on and a client can forge speakers. The OpenAI chat API's roles are
// the rule: system, user, assistant, tool, developer (newer clients' "system"), and function
// (the deprecated function-calling role older clients still send).
constexpr const char* kStandardRoles[] = {"system", "user",      "assistant",
                                          "tool",   "developer", "function"};

bool IsIdentifier(absl::string_view s) {
  if (s.empty() || s.size() > 32 || absl::ascii_isdigit(s[0])) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

// Whether a template handles list-of-parts content: it tests the content's type or iterates
// over it. Templates written for string content (Qwen2.5, Llama 3, DeepSeek-V3) concatenate
// it and fail on a list, so for them the text parts are joined first. vLLM decides the same way
// (by walking the template's syntax tree for a loop over content); this reads the source.
bool TemplateReadsContentParts(absl::string_view source) {
  for (absl::string_view marker :
       {"content is string", "content is not string", "content is iterable", "content is sequence",
        "content is mapping", "content is not mapping"}) {
    if (absl::StrContains(source, marker)) return true;
  }
  for (absl::string_view loop :
       {"in message.content", "in message['content']", "in message[\"content\"]", "in content"}) {
    if (absl::StrContains(source, loop)) return true;
  }
  return false;
}

// `messages` with every list-of-parts content joined into one string (parts are text only:
// ReadMessages refuses others).
nlohmann::ordered_json JoinContentParts(const nlohmann::ordered_json& messages) {
  nlohmann::ordered_json out = messages;
  for (nlohmann::ordered_json& message : out) {
    if (!message.is_object()) continue;
    auto content = message.find("content");
    if (content == message.end() || !content->is_array()) continue;
    std::string text;
    for (const nlohmann::ordered_json& part : *content) {
      if (part.is_object() && part.contains("text") && part["text"].is_string()) {
        text += part["text"].get_ref<const std::string&>();
      }
    }
    *content = std::move(text);
  }
  return out;
}

}  // namespace

bool ModelContext::IsKnownRole(absl::string_view role) const {
  for (const char* known : kStandardRoles) {
    if (role == known) return true;
  }
  // A template that names a role of its own as a quoted literal handles it (Llama 3.1's
  // message.role == "ipython" for tool output). Only identifier-like names qualify, so that a
  // role spelled like one of the template's special tokens never matches its text.
  if (!IsIdentifier(role)) return false;
  return absl::StrContains(chat_template_source_, absl::StrCat("'", role, "'")) ||
         absl::StrContains(chat_template_source_, absl::StrCat("\"", role, "\""));
}

absl::StatusOr<std::unique_ptr<ModelContext>> ModelContext::Load(const std::string& model_dir,
                                                                 std::string name) {
  std::unique_ptr<ModelContext> ctx(new ModelContext());
  ASSIGN_OR_RETURN(ctx->tokenizer_, tokenizer::Tokenizer::LoadFromDirectory(model_dir));
  ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(model_dir));
  if (const std::string* source = ctx->tokenizer_->config().ChatTemplate()) {
    absl::StatusOr<chat::ChatTemplate> parsed = chat::ChatTemplate::Parse(*source);
    if (parsed.ok()) {
      ctx->chat_template_ = *std::move(parsed);
      ctx->chat_template_source_ = *source;
      ctx->template_reads_parts_ = TemplateReadsContentParts(*source);
    } else {
      ctx->chat_template_error_ =
          absl::StrCat("tokenizer_config.json: chat_template: ", parsed.status().message());
      EM_LOG_WARN("router: {}/{}; chat completions are disabled", model_dir,
                  ctx->chat_template_error_);
    }
  }
  ModelDescription& d = ctx->description_;
  if (name.empty()) name = std::filesystem::path(model_dir).lexically_normal().filename();
  if (name.empty()) name = std::filesystem::path(model_dir).parent_path().filename();
  d.name = std::move(name);
  d.architecture = std::string(model::ArchitectureName(config.architecture));
  d.context_length = config.max_position_embeddings;
  d.vocab_size = config.vocab_size;
  const model::ParameterCounts counts = model::CountParameters(config);
  d.total_parameters = counts.total;
  d.active_parameters = counts.active_per_token;
  d.eos_ids = ctx->tokenizer_->special_tokens().stop_ids;
  d.bos_id = ctx->tokenizer_->bos_id();
  d.has_chat_template = ctx->chat_template_.has_value();
  d.created = absl::ToUnixSeconds(absl::Now());
  std::error_code error;
  const auto written =
      std::filesystem::last_write_time(std::filesystem::path(model_dir) / "config.json", error);
  if (!error) {
    d.created = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::file_clock::to_sys(written).time_since_epoch())
                    .count();
  }
  return ctx;
}

absl::StatusOr<Prompt> ModelContext::BuildPrompt(const PromptInput& input,
                                                 int64_t max_messages) const {
  Prompt prompt;
  switch (input.kind) {
    case PromptInput::Kind::kText: {
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(input.text, true);
      if (!ids.ok()) return InvalidParam("prompt", ids.status().message());
      prompt.token_ids = *std::move(ids);
      break;
    }
    case PromptInput::Kind::kTokens: {
      for (int32_t id : input.token_ids) {
        if (id < 0 || id >= description_.vocab_size) {
          return InvalidParam("prompt",
                              absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                           description_.vocab_size, ")"));
        }
      }
      prompt.token_ids = input.token_ids;
      break;
    }
    case PromptInput::Kind::kChat: {
      if (!chat_template_error_.empty()) {
        return InvalidParam("messages",
                            absl::StrCat("model ", description_.name,
                                         " has a chat template this server cannot use (",
                                         chat_template_error_, "); use completions"));
      }
      if (!chat_template_.has_value()) {
        return InvalidParam("messages", absl::StrCat("model ", description_.name,
                                                     " has no chat template; use completions"));
      }
      if (!input.messages.is_array() || input.messages.empty()) {
        return InvalidParam("messages", "messages must be a non-empty array");
      }
      if (static_cast<int64_t>(input.messages.size()) > max_messages) {
        return InvalidParam("messages",
                            absl::StrCat("at most ", max_messages, " messages are allowed, got ",
                                         input.messages.size()));
      }
      for (size_t i = 0; i < input.messages.size(); ++i) {
        const nlohmann::ordered_json& message = input.messages[i];
        const auto role = message.find("role");
        if (!message.is_object() || role == message.end() || !role->is_string()) {
          return InvalidParam("messages", absl::StrCat("message ", i, " needs a string 'role'"));
        }
        const std::string& name = role->get_ref<const std::string&>();
        if (!IsKnownRole(name)) {
          // The role is the client's text: cut short and quoted through dump(), so that the
          // error stays small and control bytes stay escaped.
          const std::string quoted =
              nlohmann::ordered_json(name.substr(0, 64))
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
          return InvalidParam("messages",
                              absl::StrCat("message ", i, " has role ", quoted,
                                           ", which the chat template does not know; the roles "
                                           "are ",
                                           absl::StrJoin(kStandardRoles, ", ")));
        }
      }
      chat::ChatRenderOptions options;
      options.add_generation_prompt = input.add_generation_prompt;
      options.bos_token = tokenizer_->special_tokens().bos_token;
      options.eos_token = tokenizer_->special_tokens().eos_token;
      options.tools = input.tools;
      // Special tokens come only from the template, never from message text (finding 7 of
      // issue 15): router/chat_prompt.h.
      const nlohmann::ordered_json messages =
          template_reads_parts_ ? input.messages : JoinContentParts(input.messages);
      absl::StatusOr<RenderedChat> chat =
          RenderChatPrompt(*chat_template_, *tokenizer_, messages, options);
      if (!chat.ok()) {
        // Tool-call arguments reach templates as objects (openai_request.cc); templates that
        // concatenate them as the JSON text clients send (DeepSeek-V3's) get that text instead.
        if (std::optional<nlohmann::ordered_json> as_text = ArgumentsAsText(messages)) {
          absl::StatusOr<RenderedChat> again =
              RenderChatPrompt(*chat_template_, *tokenizer_, *as_text, options);
          if (again.ok()) chat = std::move(again);
        }
      }
      if (!chat.ok()) return InvalidParam("messages", chat.status().message());
      prompt.token_ids = std::move(chat->token_ids);
      prompt.rendered = std::move(chat->text);
      break;
    }
  }
  return prompt;
}

}  // namespace expertmesh::router
