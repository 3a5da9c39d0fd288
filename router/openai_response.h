// OpenAI response shapes: completion / chat.completion objects, their streaming chunks, and the
// error object {"error": {"message", "type", "param", "code"}} with its HTTP status.
#ifndef EXPERTMESH_ROUTER_OPENAI_RESPONSE_H_
#define EXPERTMESH_ROUTER_OPENAI_RESPONSE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "router/generator.h"
#include "router/model_context.h"

namespace expertmesh::router {

using Json = nlohmann::ordered_json;

// Fixed for one response: id, model name, creation time, chat or completion.
struct ResponseContext {
  bool chat = false;
  std::string id;
  std::string model;
  int64_t created = 0;
  const tokenizer::Tokenizer* tokenizer = nullptr;
  bool logprobs = false;
  // Completions with echo and logprobs: choices[].logprobs begins with the prompt's tokens,
  // each with top_logprobs alternatives.
  bool echo_logprobs = false;
  int64_t top_logprobs = 0;
  // vLLM's prompt_logprobs field, with this many alternatives (unset: not asked).
  std::optional<int64_t> prompt_logprobs;
  // A chat of a model that thinks: messages and deltas carry reasoning_content beside content.
  bool reasoning = false;
};

// "stop", "length", or "abort"/"error" for the router's own endings.
const char* FinishReasonName(FinishReason reason);

// Logprobs of `tokens` in the chat ({"content": [...]}) or completions (tokens /
// token_logprobs / top_logprobs) layout.
// Completions' text_offset counts token bytes from `text_offset`.
Json LogprobsJson(const ResponseContext& ctx, const std::vector<GeneratedTokenInfo>& tokens,
                  size_t text_offset = 0);

// Completions logprobs of an echoed prompt followed by generated `tokens`: prompt token i >= 1
// has its logprob and top_logprobs from scored[i - 1]; the first prompt token (or one the worker
// did not score) has null for both, as in OpenAI's legacy API and vLLM.
Json EchoLogprobsJson(const ResponseContext& ctx, const std::vector<int32_t>& prompt,
                      const std::vector<PromptTokenInfo>& scored,
                      const std::vector<GeneratedTokenInfo>& tokens);

// vLLM's prompt_logprobs list: null for the first prompt token, then per prompt token a map
// {"<token id>": {"logprob", "rank", "decoded_token"}} of the token itself followed by the
// ctx.prompt_logprobs most likely tokens (a token listed once).
Json PromptLogprobsJson(const ResponseContext& ctx, const std::vector<int32_t>& prompt,
                        const std::vector<PromptTokenInfo>& scored);

// One streamed chunk for choice `index`: a delta (text, tokens) or, with `finish`, the final
// chunk of that choice. `first` adds the assistant role to a chat delta. `text_offset`: the
// choice's text bytes sent before this chunk (completions' logprobs.text_offset).
Json StreamChunk(const ResponseContext& ctx, uint32_t index, const ChoiceDelta* delta,
                 const ChoiceResult* finish, bool first, size_t text_offset = 0);

// The usage-only chunk sent last when stream_options.include_usage is set.
Json UsageChunk(const ResponseContext& ctx, uint32_t prompt_tokens, uint32_t completion_tokens,
                uint32_t cached_tokens);

// A whole non-streaming response. texts[i] and tokens[i] are choice i's output; scored[i] its
// scored prompt tokens (prompt logprobs; may be empty when not asked) of `prompt`; with
// ctx.reasoning, reasonings[i] its reasoning (texts[i] then being the content); calls[i] the
// tool calls read from its output (message.tool_calls; content null when only whitespace is
// left beside them).
Json FullResponse(const ResponseContext& ctx, const std::vector<std::string>& texts,
                  const std::vector<std::vector<GeneratedTokenInfo>>& tokens,
                  const std::vector<ChoiceResult>& results, const std::vector<int32_t>& prompt,
                  const std::vector<std::vector<PromptTokenInfo>>& scored = {},
                  const std::vector<std::string>& reasonings = {},
                  const std::vector<std::vector<ToolCall>>& calls = {});

// HTTP status for a status code: 400, 401, 404, 413, 429, 503, 504, 499 (cancelled), 500.
int HttpStatusFor(const absl::Status& status);
// The OpenAI error object for `status` ("param" from the status payload).
Json ErrorJson(const absl::Status& status);

// Serialises with invalid UTF-8 replaced (token strings can be partial characters).
std::string Dump(const Json& json);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_OPENAI_RESPONSE_H_
