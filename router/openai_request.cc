#include "router/openai_request.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "router/request_validation.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;

const Json* Field(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status TypeError(const char* name, const char* expected) {
  return InvalidParam(name, absl::StrCat("'", name, "' must be ", expected));
}

template <typename T>
absl::Status ReadNumber(const Json& body, const char* name, std::optional<T>* out) {
  const Json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  if constexpr (std::is_floating_point_v<T>) {
    if (!v->is_number()) return TypeError(name, "a number");
  } else {
    if (!v->is_number_integer()) return TypeError(name, "an integer");
  }
  *out = v->get<T>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& body, const char* name, bool* out) {
  const Json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return TypeError(name, "a boolean");
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadStop(const Json& body, GenerationParams* p) {
  const Json* v = Field(body, "stop");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string()) {
    p->stop.push_back(v->get<std::string>());
    return absl::OkStatus();
  }
  if (!v->is_array()) return TypeError("stop", "a string or an array of strings");
  for (const Json& s : *v) {
    if (!s.is_string()) return TypeError("stop", "a string or an array of strings");
    p->stop.push_back(s.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ReadPrompt(const Json& body, PromptInput* input) {
  const Json* v = Field(body, "prompt");
  if (v == nullptr) return InvalidParam("prompt", "'prompt' is required");
  if (v->is_string()) {
    input->kind = PromptInput::Kind::kText;
    input->text = v->get<std::string>();
    return absl::OkStatus();
  }
  if (v->is_array() && v->size() == 1 && (*v)[0].is_string()) {
    input->kind = PromptInput::Kind::kText;
    input->text = (*v)[0].get<std::string>();
    return absl::OkStatus();
  }
  if (v->is_array() && !v->empty() && (*v)[0].is_number_integer()) {
    input->kind = PromptInput::Kind::kTokens;
    for (const Json& t : *v) {
      if (!t.is_number_integer()) return TypeError("prompt", "a string or an array of token ids");
      input->token_ids.push_back(t.get<int32_t>());
    }
    return absl::OkStatus();
  }
  return InvalidParam("prompt",
                      "'prompt' must be a string, a one-string array or an array of token ids "
                      "(batched prompts are not supported; send one request per prompt)");
}

// Chat message content may be a string or an array of {"type": "text", "text": ...} parts.
absl::Status ReadMessages(const Json& body, PromptInput* input) {
  const Json* v = Field(body, "messages");
  if (v == nullptr) return InvalidParam("messages", "'messages' is required");
  if (!v->is_array() || v->empty()) return TypeError("messages", "a non-empty array");
  input->kind = PromptInput::Kind::kChat;
  input->messages = Json::array();
  for (const Json& m : *v) {
    if (!m.is_object()) return TypeError("messages", "an array of objects");
    const Json* role = Field(m, "role");
    if (role == nullptr || !role->is_string()) {
      return InvalidParam("messages", "every message needs a string 'role'");
    }
    Json out = Json::object();
    out["role"] = *role;
    const Json* content = Field(m, "content");
    if (content == nullptr) {
      out["content"] = "";
    } else if (content->is_string()) {
      out["content"] = *content;
    } else if (content->is_array()) {
      std::string text;
      for (const Json& part : *content) {
        const Json* type = part.is_object() ? Field(part, "type") : nullptr;
        const Json* t = part.is_object() ? Field(part, "text") : nullptr;
        if (type == nullptr || *type != "text" || t == nullptr || !t->is_string()) {
          return InvalidParam("messages", "only text content parts are supported");
        }
        text += t->get<std::string>();
      }
      out["content"] = text;
    } else {
      return InvalidParam("messages", "message content must be a string or an array of parts");
    }
    if (const Json* name = Field(m, "name"); name != nullptr && name->is_string()) {
      out["name"] = *name;
    }
    input->messages.push_back(std::move(out));
  }
  input->add_generation_prompt = input->messages.back()["role"] != "assistant";
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(const std::string& body_text, bool chat) {
  Json body = Json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    // Re-parse with exceptions only to get the position; caught here at the boundary.
    std::string detail = "the request body is not valid JSON";
    try {
      Json unused = Json::parse(body_text);
      (void)unused;
    } catch (const nlohmann::json::exception& e) {
      detail = absl::StrCat(detail, ": ", e.what());
    }
    return InvalidParam("", detail);
  }
  if (!body.is_object()) return InvalidParam("", "the request body must be a JSON object");
  OpenAiRequest r;
  r.chat = chat;
  if (const Json* model = Field(body, "model")) {
    if (!model->is_string()) return TypeError("model", "a string");
    r.model = model->get<std::string>();
  }
  RETURN_IF_ERROR(chat ? ReadMessages(body, &r.input) : ReadPrompt(body, &r.input));
  GenerationParams& p = r.params;
  RETURN_IF_ERROR(ReadNumber(body, "temperature", &p.temperature));
  RETURN_IF_ERROR(ReadNumber(body, "top_p", &p.top_p));
  RETURN_IF_ERROR(ReadNumber(body, "top_k", &p.top_k));
  RETURN_IF_ERROR(ReadNumber(body, "min_p", &p.min_p));
  RETURN_IF_ERROR(ReadNumber(body, "repetition_penalty", &p.repetition_penalty));
  RETURN_IF_ERROR(ReadNumber(body, "presence_penalty", &p.presence_penalty));
  RETURN_IF_ERROR(ReadNumber(body, "frequency_penalty", &p.frequency_penalty));
  RETURN_IF_ERROR(ReadNumber(body, "max_tokens", &p.max_tokens));
  if (chat) {
    std::optional<int64_t> max_completion_tokens;
    RETURN_IF_ERROR(ReadNumber(body, "max_completion_tokens", &max_completion_tokens));
    if (max_completion_tokens.has_value()) p.max_tokens = max_completion_tokens;
  }
  if (const Json* seed = Field(body, "seed")) {
    if (!seed->is_number_integer()) return TypeError("seed", "an integer");
    p.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
  }
  std::optional<int64_t> n;
  RETURN_IF_ERROR(ReadNumber(body, "n", &n));
  p.n = n.value_or(1);
  RETURN_IF_ERROR(ReadStop(body, &p));
  if (const Json* ids = Field(body, "stop_token_ids")) {
    if (!ids->is_array()) return TypeError("stop_token_ids", "an array of integers");
    for (const Json& id : *ids) {
      if (!id.is_number_integer()) return TypeError("stop_token_ids", "an array of integers");
      p.stop_token_ids.push_back(id.get<int32_t>());
    }
  }
  RETURN_IF_ERROR(ReadBool(body, "ignore_eos", &p.ignore_eos));
  if (chat) {
    RETURN_IF_ERROR(ReadBool(body, "logprobs", &p.logprobs));
    std::optional<int64_t> top;
    RETURN_IF_ERROR(ReadNumber(body, "top_logprobs", &top));
    p.top_logprobs = top.value_or(0);
    if (p.top_logprobs > 0 && !p.logprobs) {
      return InvalidParam("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
  } else {
    // Completions: logprobs is the number of alternatives (0..5 in OpenAI; we allow 20).
    std::optional<int64_t> lp;
    RETURN_IF_ERROR(ReadNumber(body, "logprobs", &lp));
    if (lp.has_value()) {
      p.logprobs = true;
      p.top_logprobs = *lp;
    }
  }
  RETURN_IF_ERROR(ReadBool(body, "stream", &r.stream));
  if (const Json* so = Field(body, "stream_options")) {
    if (!so->is_object()) return TypeError("stream_options", "an object");
    RETURN_IF_ERROR(ReadBool(*so, "include_usage", &r.include_usage));
  }
  if (const Json* echo = Field(body, "echo");
      echo != nullptr && echo->is_boolean() && echo->get<bool>()) {
    return InvalidParam("echo", "'echo' is not supported");
  }
  return r;
}

}  // namespace expertmesh::router
