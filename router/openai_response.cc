#include "router/openai_response.h"

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

Json LogprobsJson(const ResponseContext& ctx, const std::vector<GeneratedTokenInfo>& tokens) {
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
  Json toks = Json::array(), lps = Json::array(), tops = Json::array(), offsets = Json::array();
  size_t offset = 0;
  for (const GeneratedTokenInfo& t : tokens) {
    std::string text(tok.TokenBytes(t.id));
    toks.push_back(text);
    lps.push_back(t.logprob);
    Json top = Json::object();
    for (const auto& [id, lp] : t.top) top[std::string(tok.TokenBytes(id))] = lp;
    tops.push_back(std::move(top));
    offsets.push_back(offset);
    offset += text.size();
  }
  return Json{
      {"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

Json StreamChunk(const ResponseContext& ctx, uint32_t index, const ChoiceDelta* delta,
                 const ChoiceResult* finish, bool first) {
  Json j = Skeleton(ctx, true);
  Json choice = Json::object();
  choice["index"] = index;
  const std::string text = delta ? delta->text : "";
  if (ctx.chat) {
    Json d = Json::object();
    if (first) d["role"] = "assistant";
    if (delta != nullptr || first) d["content"] = text;
    choice["delta"] = std::move(d);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = (ctx.logprobs && delta && !delta->tokens.empty())
                           ? LogprobsJson(ctx, delta->tokens)
                           : Json(nullptr);
  choice["finish_reason"] = finish ? Json(FinishReasonName(finish->reason)) : Json(nullptr);
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
                  const std::vector<ChoiceResult>& results, uint32_t prompt_tokens) {
  Json j = Skeleton(ctx, false);
  Json choices = Json::array();
  uint32_t completion = 0, cached = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    Json c = Json::object();
    c["index"] = i;
    if (ctx.chat) {
      c["message"] = Json{{"role", "assistant"}, {"content", texts[i]}};
    } else {
      c["text"] = texts[i];
    }
    c["logprobs"] = ctx.logprobs ? LogprobsJson(ctx, tokens[i]) : Json(nullptr);
    c["finish_reason"] = FinishReasonName(results[i].reason);
    if (results[i].reason == FinishReason::kStopString) c["stop_reason"] = results[i].matched_stop;
    choices.push_back(std::move(c));
    completion += results[i].completion_tokens;
    cached = std::max(cached, results[i].cached_prompt_tokens);
  }
  j["choices"] = std::move(choices);
  j["usage"] = Usage(prompt_tokens, completion, cached);
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
