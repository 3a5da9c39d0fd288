#include "router/openai_request.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "router/json_body.h"
#include "router/output_constraint.h"
#include "router/request_validation.h"
#include "router/tool_calls.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;

constexpr int64_t kInt32Min = std::numeric_limits<int32_t>::min();
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

const Json* Field(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status TypeError(const char* name, const char* expected) {
  return InvalidParam(name, absl::StrCat("'", name, "' must be ", expected));
}

// A JSON integer as int64, refused (not wrapped or truncated) outside [lo, hi]: nlohmann's
// get<int32_t>() of 4294967297 is 1, and get<int64_t>() of 2^64 - 1 is -1.
absl::Status ReadInteger(const Json& v, const char* name, int64_t lo, int64_t hi, int64_t* out) {
  if (!v.is_number_integer()) return TypeError(name, "an integer");
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi)
                                               : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  if (!in_range) {
    return InvalidParam(name, absl::StrCat("'", name, "' must be an integer in [", lo, ", ", hi,
                                           "], got ", v.dump()));
  }
  *out = v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
  return absl::OkStatus();
}

// An optional integer field, range-checked before it is narrowed to T.
template <typename T>
absl::Status ReadInt(const Json& body, const char* name, int64_t lo, int64_t hi,
                     std::optional<T>* out) {
  const Json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  int64_t value = 0;
  RETURN_IF_ERROR(ReadInteger(*v, name, lo, hi, &value));
  *out = static_cast<T>(value);
  return absl::OkStatus();
}

// An optional number field. Doubles that overflow float become infinite, which the sampling
// rules refuse with the field's name.
absl::Status ReadFloat(const Json& body, const char* name, std::optional<float>* out) {
  const Json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return TypeError(name, "a number");
  *out = static_cast<float>(v->get<double>());
  return absl::OkStatus();
}

// Token ids: int32 on the wire to the worker; the vocabulary check comes later.
absl::Status ReadTokenId(const Json& v, const char* name, int32_t* out) {
  int64_t id = 0;
  RETURN_IF_ERROR(ReadInteger(v, name, 0, std::numeric_limits<int32_t>::max(), &id));
  *out = static_cast<int32_t>(id);
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
      int32_t id = 0;
      RETURN_IF_ERROR(ReadTokenId(t, "prompt", &id));
      input->token_ids.push_back(id);
    }
    return absl::OkStatus();
  }
  return InvalidParam("prompt",
                      "'prompt' must be a string, a one-string array or an array of token ids "
                      "(batched prompts are not supported; send one request per prompt)");
}

// Content may be a string, null, or an array of {"type": "text", "text": ...} parts; parts pass
// through as parts (ModelContext joins them for templates that only print strings).
absl::Status ReadContent(const Json& m, Json* out) {
  auto content = m.find("content");
  if (content == m.end() || content->is_null()) {
    // An assistant turn that only calls tools keeps its null (or absent) content: transformers
    // hands the template the client's dict as it is, and templates test `content is none`.
    // Any other message without content renders as empty text, never as "None".
    if (Field(m, "tool_calls") != nullptr) {
      if (content != m.end()) (*out)["content"] = nullptr;
    } else {
      (*out)["content"] = "";
    }
  } else if (content->is_string()) {
    (*out)["content"] = *content;
  } else if (content->is_array()) {
    Json parts = Json::array();
    for (const Json& part : *content) {
      const Json* type = part.is_object() ? Field(part, "type") : nullptr;
      const Json* t = part.is_object() ? Field(part, "text") : nullptr;
      if (type == nullptr || *type != "text" || t == nullptr || !t->is_string()) {
        return InvalidParam("messages", "only text content parts are supported");
      }
      parts.push_back(Json{{"type", "text"}, {"text", *t}});
    }
    (*out)["content"] = std::move(parts);
  } else {
    return InvalidParam("messages", "message content must be a string or an array of parts");
  }
  return absl::OkStatus();
}

// An assistant message's tool_calls: [{"id", "type": "function", "function": {"name",
// "arguments"}}]. OpenAI clients send arguments as a JSON string; the published templates that
// print arguments key by key (Qwen3-Coder, Qwen3.5, GLM-4.6, MiniMax-M2) need the object and
// refuse a string, so a string that parses as a JSON object becomes that object, as vLLM does
// before rendering. Other strings stay strings for the template to print or refuse.
absl::Status ReadToolCalls(const Json& calls, Json* out) {
  if (!calls.is_array()) return TypeError("messages", "tool_calls as an array of objects");
  Json kept = Json::array();
  for (const Json& call : calls) {
    const Json* function = call.is_object() ? Field(call, "function") : nullptr;
    const Json* name =
        function != nullptr && function->is_object() ? Field(*function, "name") : nullptr;
    if (name == nullptr || !name->is_string()) {
      return InvalidParam("messages", "every tool call needs a function with a string 'name'");
    }
    Json c = call;
    Json& args = c["function"]["arguments"];
    if (args.is_null()) {
      args = Json::object();
    } else if (args.is_string()) {
      // Through the body parser, so the nesting bound holds inside the string too.
      absl::StatusOr<Json> parsed = ParseJsonBody(args.get_ref<const std::string&>());
      if (parsed.ok() && parsed->is_object()) args = *std::move(parsed);
    }
    kept.push_back(std::move(c));
  }
  (*out)["tool_calls"] = std::move(kept);
  return absl::OkStatus();
}

// Chat messages keep what chat templates read: role, content, name, tool_calls, tool_call_id,
// and reasoning (reasoning_content or reasoning, which RenderChat aliases as transformers does).
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
    RETURN_IF_ERROR(ReadContent(m, &out));
    for (const char* key : {"name", "tool_call_id", "reasoning_content", "reasoning"}) {
      if (const Json* value = Field(m, key); value != nullptr && value->is_string()) {
        out[key] = *value;
      }
    }
    if (const Json* calls = Field(m, "tool_calls")) RETURN_IF_ERROR(ReadToolCalls(*calls, &out));
    input->messages.push_back(std::move(out));
  }
  input->add_generation_prompt = input->messages.back()["role"] != "assistant";
  // OpenAI tool definitions, passed to the template as `tools` ([{"type": "function",
  // "function": {"name", "description", "parameters"}}]); templates print them as given.
  if (const Json* tools = Field(body, "tools")) {
    if (!tools->is_array()) return TypeError("tools", "an array of tool objects");
    for (const Json& tool : *tools) {
      if (!tool.is_object()) return TypeError("tools", "an array of tool objects");
    }
    input->tools = *tools;
  }
  absl::StatusOr<ToolChoice> choice =
      ParseToolChoice(Field(body, "tool_choice"), Field(body, "tools"));
  if (!choice.ok()) return InvalidParam("tool_choice", choice.status().message());
  input->tool_choice_none = choice->kind == ToolChoice::Kind::kNone;
  input->tool_choice_required = choice->kind == ToolChoice::Kind::kRequired;
  input->tool_choice_function = choice->function;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(const std::string& body_text, bool chat) {
  absl::StatusOr<Json> parsed = ParseJsonBody(body_text);
  if (!parsed.ok()) return InvalidParam("", parsed.status().message());
  const Json& body = *parsed;
  if (!body.is_object()) return InvalidParam("", "the request body must be a JSON object");
  OpenAiRequest r;
  r.chat = chat;
  if (const Json* model = Field(body, "model")) {
    if (!model->is_string()) return TypeError("model", "a string");
    r.model = model->get<std::string>();
  }
  RETURN_IF_ERROR(chat ? ReadMessages(body, &r.input) : ReadPrompt(body, &r.input));
  GenerationParams& p = r.params;
  RETURN_IF_ERROR(ReadFloat(body, "temperature", &p.temperature));
  RETURN_IF_ERROR(ReadFloat(body, "top_p", &p.top_p));
  RETURN_IF_ERROR(ReadInt(body, "top_k", kInt32Min, kInt32Max, &p.top_k));
  RETURN_IF_ERROR(ReadFloat(body, "min_p", &p.min_p));
  RETURN_IF_ERROR(ReadFloat(body, "repetition_penalty", &p.repetition_penalty));
  RETURN_IF_ERROR(ReadFloat(body, "presence_penalty", &p.presence_penalty));
  RETURN_IF_ERROR(ReadFloat(body, "frequency_penalty", &p.frequency_penalty));
  // Counts are refused below 1 / above the context by ValidateParams and ResolveMaxTokens;
  // here they only have to fit the type without wrapping.
  RETURN_IF_ERROR(ReadInt(body, "max_tokens", kInt64Min, kInt64Max, &p.max_tokens));
  // Completions without max_tokens generate 16 tokens, as OpenAI's and vLLM's do: a client
  // written for them gets a short answer, not a generation that fills the context. Chat has no
  // such default in either, so it keeps "up to the context".
  if (!chat) p.default_max_tokens = kCompletionsDefaultMaxTokens;
  if (chat) {
    std::optional<int64_t> max_completion_tokens;
    RETURN_IF_ERROR(
        ReadInt(body, "max_completion_tokens", kInt64Min, kInt64Max, &max_completion_tokens));
    if (max_completion_tokens.has_value()) p.max_tokens = max_completion_tokens;
  }
  if (const Json* seed = Field(body, "seed")) {
    // Any 64-bit value, signed or not, names a seed; only its bits matter.
    if (!seed->is_number_integer()) return TypeError("seed", "an integer");
    p.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
  }
  std::optional<int64_t> n;
  RETURN_IF_ERROR(ReadInt(body, "n", kInt64Min, kInt64Max, &n));
  p.n = n.value_or(1);
  RETURN_IF_ERROR(ReadStop(body, &p));
  if (const Json* ids = Field(body, "stop_token_ids")) {
    if (!ids->is_array()) return TypeError("stop_token_ids", "an array of integers");
    for (const Json& id : *ids) {
      if (!id.is_number_integer()) return TypeError("stop_token_ids", "an array of integers");
      int32_t token = 0;
      RETURN_IF_ERROR(ReadTokenId(id, "stop_token_ids", &token));
      p.stop_token_ids.push_back(token);
    }
  }
  RETURN_IF_ERROR(ReadBool(body, "ignore_eos", &p.ignore_eos));
  RETURN_IF_ERROR(ReadOutputConstraint(body, &p.constraint));
  if (chat) {
    RETURN_IF_ERROR(ReadBool(body, "logprobs", &p.logprobs));
    std::optional<int64_t> top;
    RETURN_IF_ERROR(ReadInt(body, "top_logprobs", kInt64Min, kInt64Max, &top));
    p.top_logprobs = top.value_or(0);
    if (p.top_logprobs > 0 && !p.logprobs) {
      return InvalidParam("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
  } else {
    // Completions: logprobs is the number of alternatives (0..5 in OpenAI; we allow 20).
    std::optional<int64_t> lp;
    RETURN_IF_ERROR(ReadInt(body, "logprobs", kInt64Min, kInt64Max, &lp));
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
  RETURN_IF_ERROR(ReadBool(body, "echo", &r.echo));
  if (r.echo && chat) {
    return InvalidParam("echo", "'echo' is supported on /v1/completions only");
  }
  // Range-checked with the other sampling values (request_validation.h); here only the type.
  RETURN_IF_ERROR(ReadInt(body, "prompt_logprobs", kInt64Min, kInt64Max, &r.prompt_logprobs));
  if (r.prompt_logprobs.has_value() && r.stream) {
    // As vLLM: the list is one piece of the final response, not a stream of deltas.
    return InvalidParam("prompt_logprobs", "'prompt_logprobs' is not available with 'stream'");
  }
  p.prompt_logprobs = r.prompt_logprobs;
  if (r.echo && p.logprobs) {
    // The echoed prompt's tokens get logprobs too, with as many alternatives as the
    // completion's (vLLM: prompt_logprobs defaults to logprobs under echo).
    p.prompt_logprobs = std::max(p.prompt_logprobs.value_or(0), p.top_logprobs);
  }
  return r;
}

}  // namespace expertmesh::router
