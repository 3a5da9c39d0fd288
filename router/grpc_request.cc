#include "router/grpc_request.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "router/json_body.h"
#include "router/tool_calls.h"

namespace expertmesh::router {
namespace {

namespace pb = ::expertmesh::v1;
using Json = nlohmann::ordered_json;

// A JSON text field of the public API (tool parameters, call arguments) as JSON.
absl::StatusOr<Json> JsonField(const std::string& text, const char* field) {
  absl::StatusOr<Json> parsed = ParseJsonBody(text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be JSON text: ", parsed.status().message()));
  }
  return parsed;
}

// A chat as the OpenAI API's messages, tools and tool_choice would give it.
absl::Status FromPublicChat(const pb::ChatPrompt& chat, PromptInput* input) {
  input->kind = PromptInput::Kind::kChat;
  for (const pb::ChatMessage& m : chat.messages()) {
    Json msg{{"role", m.role()}, {"content", m.content()}};
    if (!m.name().empty()) msg["name"] = m.name();
    if (!m.tool_call_id().empty()) msg["tool_call_id"] = m.tool_call_id();
    if (!m.tool_calls().empty()) {
      if (m.content().empty()) msg["content"] = nullptr;
      Json calls = Json::array();
      for (const pb::ToolCall& c : m.tool_calls()) {
        // Templates that print arguments key by key need the object (as the HTTP API gives it).
        Json args = Json::object();
        if (!c.arguments().empty()) {
          ASSIGN_OR_RETURN(args, JsonField(c.arguments(), "tool_calls.arguments"));
        }
        calls.push_back({{"id", c.id()},
                         {"type", "function"},
                         {"function", {{"name", c.name()}, {"arguments", std::move(args)}}}});
      }
      msg["tool_calls"] = std::move(calls);
    }
    input->messages.push_back(std::move(msg));
  }
  input->add_generation_prompt =
      chat.add_generation_prompt() ||
      (!input->messages.empty() && input->messages.back()["role"] != "assistant");
  Json tools = Json::array();
  for (const pb::Tool& t : chat.tools()) {
    Json function{{"name", t.name()}};
    if (!t.description().empty()) function["description"] = t.description();
    if (!t.parameters().empty()) {
      ASSIGN_OR_RETURN(function["parameters"], JsonField(t.parameters(), "tools.parameters"));
    }
    tools.push_back({{"type", "function"}, {"function", std::move(function)}});
  }
  Json choice;
  if (!chat.tool_choice_function().empty()) {
    choice = {{"type", "function"}, {"function", {{"name", chat.tool_choice_function()}}}};
  } else if (!chat.tool_choice().empty()) {
    choice = chat.tool_choice();
  }
  ASSIGN_OR_RETURN(ToolChoice tc, ParseToolChoice(choice.is_null() ? nullptr : &choice,
                                                  tools.empty() ? nullptr : &tools));
  if (!tools.empty()) input->tools = std::move(tools);
  input->tool_choice_none = tc.kind == ToolChoice::Kind::kNone;
  input->tool_choice_required = tc.kind == ToolChoice::Kind::kRequired;
  input->tool_choice_function = tc.function;
  return absl::OkStatus();
}

// The constraint oneof, as ReadOutputConstraint reads the HTTP fields.
absl::Status FromPublicConstraint(const pb::GenerateRequest& r, OutputConstraint* c) {
  using Kind = OutputConstraint::Kind;
  switch (r.constraint_case()) {
    case pb::GenerateRequest::kJsonSchema: {
      c->kind = Kind::kJsonSchema;
      c->field = "json_schema";
      ASSIGN_OR_RETURN(Json schema, JsonField(r.json_schema(), "json_schema"));
      c->text = schema.dump(-1, ' ', false, Json::error_handler_t::replace);
      break;
    }
    case pb::GenerateRequest::kJsonObject:
      if (r.json_object()) *c = {.kind = Kind::kJsonObject, .field = "json_object"};
      break;
    case pb::GenerateRequest::kRegex:
      *c = {.kind = Kind::kRegex, .text = r.regex(), .field = "regex"};
      break;
    case pb::GenerateRequest::kChoice:
      if (r.choice().choices().empty()) {
        return absl::InvalidArgumentError("choice must list at least one string");
      }
      *c = {.kind = Kind::kChoice,
            .choices = {r.choice().choices().begin(), r.choice().choices().end()},
            .field = "choice"};
      break;
    case pb::GenerateRequest::kGrammar:
      *c = {.kind = Kind::kGrammar, .text = r.grammar(), .field = "grammar"};
      break;
    case pb::GenerateRequest::CONSTRAINT_NOT_SET:
      break;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FromPublicRequest(const pb::GenerateRequest& r, PromptInput* input,
                               GenerationParams* p) {
  switch (r.prompt_case()) {
    case pb::GenerateRequest::kText:
      input->kind = PromptInput::Kind::kText;
      input->text = r.text();
      break;
    case pb::GenerateRequest::kTokenIds:
      input->kind = PromptInput::Kind::kTokens;
      input->token_ids.assign(r.token_ids().ids().begin(), r.token_ids().ids().end());
      break;
    case pb::GenerateRequest::kChat:
      RETURN_IF_ERROR(FromPublicChat(r.chat(), input));
      break;
    default:
      return absl::InvalidArgumentError("GenerateRequest needs a prompt (text, chat or token_ids)");
  }
  const pb::SamplingParams& s = r.sampling();
  if (s.has_temperature()) p->temperature = s.temperature();
  if (s.has_top_p()) p->top_p = s.top_p();
  if (s.has_top_k()) p->top_k = s.top_k();
  if (s.has_min_p()) p->min_p = s.min_p();
  if (s.has_repetition_penalty()) p->repetition_penalty = s.repetition_penalty();
  if (s.has_presence_penalty()) p->presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) p->frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) p->seed = s.seed();
  if (r.stop().has_max_tokens()) p->max_tokens = r.stop().max_tokens();
  p->stop.assign(r.stop().stop().begin(), r.stop().stop().end());
  p->stop_token_ids.assign(r.stop().stop_token_ids().begin(), r.stop().stop_token_ids().end());
  p->ignore_eos = r.stop().ignore_eos();
  p->logprobs = r.logprobs() || r.top_logprobs() > 0;
  p->top_logprobs = r.top_logprobs();
  if (r.has_prompt_logprobs()) p->prompt_logprobs = r.prompt_logprobs();
  return FromPublicConstraint(r, &p->constraint);
}

}  // namespace expertmesh::router
