#include "router/openai_response.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#include "router/request_validation.h"

namespace expertmesh::router {
namespace {

Json Usage(uint32_t prompt, uint32_t completion, uint32_t cached) {
  Json u = Json::object();
  u["prompt_tokens"] = prompt;
  u["completion_tokens"] = completion;
  u["total_tokens"] = prompt + completion;
  u["prompt_tokens_details"] = Json{{"cached_tokens", cached}};
  return u;
}

Json Bytes(std::string_view s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// -inf (a token the model rules out) as the finite value OpenAI and vLLM send: JSON has no
// infinities.
float Finite(float logprob) { return std::max(logprob, -9999.0f); }

// The four parallel arrays of completions logprobs, built token by token.
class CompletionLogprobs {
 public:
  CompletionLogprobs(const tokenizer::Tokenizer& tok, size_t text_offset)
      : tok_(tok), offset_(text_offset) {}
  // `scored` null: the token has no logprob (the first prompt token); else at most `top` of
  // its alternatives are listed.
  void Add(int32_t id, const GeneratedTokenInfo* scored, size_t top) {
    std::string text(tok_.TokenBytes(id));
    offsets_.push_back(offset_);
    offset_ += text.size();
    toks_.push_back(std::move(text));
    if (scored == nullptr) {
      lps_.push_back(nullptr);
      tops_.push_back(nullptr);
      return;
    }
    lps_.push_back(Finite(scored->logprob));
    Json alternatives = Json::object();
    for (size_t j = 0; j < scored->top.size() && j < top; ++j) {
      alternatives[std::string(tok_.TokenBytes(scored->top[j].first))] =
          Finite(scored->top[j].second);
    }
    tops_.push_back(std::move(alternatives));
  }
  Json ToJson() {
    return Json{{"tokens", std::move(toks_)},
                {"token_logprobs", std::move(lps_)},
                {"top_logprobs", std::move(tops_)},
                {"text_offset", std::move(offsets_)}};
  }

 private:
  const tokenizer::Tokenizer& tok_;
  size_t offset_;
  Json toks_ = Json::array(), lps_ = Json::array(), tops_ = Json::array(), offsets_ = Json::array();
};

Json Skeleton(const ResponseContext& ctx, bool chunk) {
  Json j = Json::object();
  j["id"] = ctx.id;
  j["object"] =
      ctx.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  j["created"] = ctx.created;
  j["model"] = ctx.model;
  return j;
}

}  // namespace

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
    case FinishReason::kStopString:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "stop";
}

Json LogprobsJson(const ResponseContext& ctx, const std::vector<GeneratedTokenInfo>& tokens,
                  size_t text_offset) {
  const tokenizer::Tokenizer& tok = *ctx.tokenizer;
  if (ctx.chat) {
    Json content = Json::array();
    for (const GeneratedTokenInfo& t : tokens) {
      std::string_view text = tok.TokenBytes(t.id);
      Json top = Json::array();
      for (const auto& [id, lp] : t.top) {
        top.push_back(Json{{"token", std::string(tok.TokenBytes(id))},
                           {"logprob", lp},
                           {"bytes", Bytes(tok.TokenBytes(id))}});
      }
      content.push_back(Json{{"token", std::string(text)},
                             {"logprob", t.logprob},
                             {"bytes", Bytes(text)},
                             {"top_logprobs", std::move(top)}});
    }
    return Json{{"content", std::move(content)}};
  }
  CompletionLogprobs out(tok, text_offset);
  for (const GeneratedTokenInfo& t : tokens) out.Add(t.id, &t, t.top.size());
  return out.ToJson();
}

Json EchoLogprobsJson(const ResponseContext& ctx, const std::vector<int32_t>& prompt,
                      const std::vector<PromptTokenInfo>& scored,
                      const std::vector<GeneratedTokenInfo>& tokens) {
  CompletionLogprobs out(*ctx.tokenizer, 0);
  const size_t top = static_cast<size_t>(std::max<int64_t>(ctx.top_logprobs, 0));
  for (size_t i = 0; i < prompt.size(); ++i) {
    // The worker scored prompt tokens 1..n-1, maybe with more alternatives than asked here
    // (an explicit prompt_logprobs above logprobs).
    const GeneratedTokenInfo* s = i >= 1 && i - 1 < scored.size() ? &scored[i - 1].token : nullptr;
    out.Add(prompt[i], s, top);
  }
  for (const GeneratedTokenInfo& t : tokens) out.Add(t.id, &t, t.top.size());
  return out.ToJson();
}

Json PromptLogprobsJson(const ResponseContext& ctx, const std::vector<int32_t>& prompt,
                        const std::vector<PromptTokenInfo>& scored) {
  const tokenizer::Tokenizer& tok = *ctx.tokenizer;
  const size_t k = static_cast<size_t>(std::max<int64_t>(ctx.prompt_logprobs.value_or(0), 0));
  Json list = Json::array();
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (i == 0 || i - 1 >= scored.size()) {
      list.push_back(nullptr);
      continue;
    }
    const PromptTokenInfo& p = scored[i - 1];
    Json entry = Json::object();
    auto add = [&](int32_t id, float logprob, int32_t rank) {
      const std::string key = std::to_string(id);
      if (entry.contains(key)) return;
      entry[key] = Json{{"logprob", Finite(logprob)},
                        {"rank", rank},
                        {"decoded_token", std::string(tok.TokenBytes(id))}};
    };
    add(p.token.id, p.token.logprob, p.rank);
    for (size_t j = 0; j < p.token.top.size() && j < k; ++j) {
      add(p.token.top[j].first, p.token.top[j].second, static_cast<int32_t>(j + 1));
    }
    list.push_back(std::move(entry));
  }
  return list;
}

// "tool_calls" where the output called tools and stopped (by itself or at a stop string, as
// vLLM reports it), else the reason's name.
const char* FinishName(const ChoiceResult& r) {
  const bool stopped = r.reason == FinishReason::kStop || r.reason == FinishReason::kStopString;
  return r.called_tools && stopped ? "tool_calls" : FinishReasonName(r.reason);
}

// OpenAI's tool_calls entries for calls first.. of choice `choice`; streamed ones carry their
// index in the choice.
Json ToolCallsJson(const ResponseContext& ctx, uint32_t choice, uint32_t first,
                   const std::vector<ToolCall>& calls, bool streamed) {
  const size_t dash = ctx.id.find('-');
  const std::string id = dash == std::string::npos ? ctx.id : ctx.id.substr(dash + 1);
  Json list = Json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    Json call = Json::object();
    if (streamed) call["index"] = first + k;
    call["id"] = absl::StrCat("call_", id, "_", choice, "_", first + k);
    call["type"] = "function";
    call["function"] = Json{{"name", calls[k].name}, {"arguments", calls[k].arguments}};
    list.push_back(std::move(call));
  }
  return list;
}

Json StreamChunk(const ResponseContext& ctx, uint32_t index, const ChoiceDelta* delta,
                 const ChoiceResult* finish, bool first, size_t text_offset) {
  Json j = Skeleton(ctx, true);
  Json choice = Json::object();
  choice["index"] = index;
  const std::string text = delta ? delta->text : "";
  if (ctx.chat) {
    Json d = Json::object();
    if (first) d["role"] = "assistant";
    const bool has_reasoning = delta != nullptr && !delta->reasoning.empty();
    const bool has_calls = delta != nullptr && !delta->tool_calls.empty();
    if (has_reasoning) d["reasoning_content"] = delta->reasoning;
    if ((delta != nullptr && ((!has_reasoning && !has_calls) || !text.empty())) || first) {
      d["content"] = text;
    }
    if (has_calls) {
      d["tool_calls"] = ToolCallsJson(ctx, index, delta->first_call, delta->tool_calls, true);
    }
    choice["delta"] = std::move(d);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = (ctx.logprobs && delta && !delta->tokens.empty())
                           ? LogprobsJson(ctx, delta->tokens, text_offset)
                           : Json(nullptr);
  choice["finish_reason"] = finish ? Json(FinishName(*finish)) : Json(nullptr);
  if (finish && finish->reason == FinishReason::kStopString) {
    choice["stop_reason"] = finish->matched_stop;
  }
  j["choices"] = Json::array({std::move(choice)});
  return j;
}

Json UsageChunk(const ResponseContext& ctx, uint32_t prompt_tokens, uint32_t completion_tokens,
                uint32_t cached_tokens) {
  Json j = Skeleton(ctx, true);
  j["choices"] = Json::array();
  j["usage"] = Usage(prompt_tokens, completion_tokens, cached_tokens);
  return j;
}

Json FullResponse(const ResponseContext& ctx, const std::vector<std::string>& texts,
                  const std::vector<std::vector<GeneratedTokenInfo>>& tokens,
                  const std::vector<ChoiceResult>& results, const std::vector<int32_t>& prompt,
                  const std::vector<std::vector<PromptTokenInfo>>& scored,
                  const std::vector<std::string>& reasonings,
                  const std::vector<std::vector<ToolCall>>& calls) {
  const uint32_t prompt_tokens = static_cast<uint32_t>(prompt.size());
  static const std::vector<PromptTokenInfo> kNone;
  auto scored_of = [&](size_t i) -> const std::vector<PromptTokenInfo>& {
    return i < scored.size() ? scored[i] : kNone;
  };
  Json j = Skeleton(ctx, false);
  Json choices = Json::array();
  uint32_t completion = 0, cached = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    Json c = Json::object();
    c["index"] = i;
    if (ctx.chat) {
      c["message"] = Json{{"role", "assistant"}, {"content", texts[i]}};
      if (ctx.reasoning) {
        const bool has = i < reasonings.size() && !reasonings[i].empty();
        c["message"]["reasoning_content"] = has ? Json(reasonings[i]) : Json(nullptr);
      }
      if (i < calls.size() && !calls[i].empty()) {
        if (absl::StripAsciiWhitespace(texts[i]).empty()) c["message"]["content"] = nullptr;
        c["message"]["tool_calls"] =
            ToolCallsJson(ctx, static_cast<uint32_t>(i), 0, calls[i], false);
      }
    } else {
      c["text"] = texts[i];
    }
    c["logprobs"] = !ctx.logprobs       ? Json(nullptr)
                    : ctx.echo_logprobs ? EchoLogprobsJson(ctx, prompt, scored_of(i), tokens[i])
                                        : LogprobsJson(ctx, tokens[i]);
    c["finish_reason"] = FinishName(results[i]);
    if (results[i].reason == FinishReason::kStopString) c["stop_reason"] = results[i].matched_stop;
    // vLLM's places: each choice of a completion, the response of a chat (below).
    if (ctx.prompt_logprobs.has_value() && !ctx.chat) {
      c["prompt_logprobs"] = PromptLogprobsJson(ctx, prompt, scored_of(i));
    }
    choices.push_back(std::move(c));
    completion += results[i].completion_tokens;
    cached = std::max(cached, results[i].cached_prompt_tokens);
  }
  j["choices"] = std::move(choices);
  j["usage"] = Usage(prompt_tokens, completion, cached);
  if (ctx.prompt_logprobs.has_value() && ctx.chat) {
    j["prompt_logprobs"] = PromptLogprobsJson(ctx, prompt, scored_of(0));
  }
  return j;
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kCancelled:
      return 499;
    default:
      return 500;
  }
}

Json ErrorJson(const absl::Status& status) {
  const int http = HttpStatusFor(status);
  const char* type = http == 400   ? "invalid_request_error"
                     : http == 401 ? "authentication_error"
                     : http == 404 ? "not_found_error"
                     : http == 429 ? "rate_limit_error"
                     : http == 503 ? "service_unavailable"
                                   : "server_error";
  Json code = nullptr;
  if (http == 401) code = "invalid_api_key";
  if (http == 404) code = "model_not_found";
  if (http == 429) code = "rate_limit_exceeded";
  const std::string param = ParamOf(status);
  if (http == 400 && param == "prompt" &&
      std::string(status.message()).find("context length") != std::string::npos) {
    code = "context_length_exceeded";
  }
  return Json{{"error",
               {{"message", std::string(status.message())},
                {"type", type},
                {"param", param.empty() ? Json(nullptr) : Json(param)},
                {"code", code}}}};
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace expertmesh::router
