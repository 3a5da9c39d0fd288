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
};

// "stop", "length", or "abort"/"error" for the router's own endings.
const char* FinishReasonName(FinishReason reason);

// Logprobs of `tokens` in the chat ({"content": [...]}) or completions (tokens /
// token_logprobs / top_logprobs) layout.
Json LogprobsJson(const ResponseContext& ctx, const std::vector<GeneratedTokenInfo>& tokens);

// One streamed chunk for choice `index`: a delta (text, tokens) or, with `finish`, the final
// chunk of that choice. `first` adds the assistant role to a chat delta.
Json StreamChunk(const ResponseContext& ctx, uint32_t index, const ChoiceDelta* delta,
                 const ChoiceResult* finish, bool first);

// The usage-only chunk sent last when stream_options.include_usage is set.
Json UsageChunk(const ResponseContext& ctx, uint32_t prompt_tokens, uint32_t completion_tokens,
                uint32_t cached_tokens);

// A whole non-streaming response. texts[i] and tokens[i] are choice i's output.
Json FullResponse(const ResponseContext& ctx, const std::vector<std::string>& texts,
                  const std::vector<std::vector<GeneratedTokenInfo>>& tokens,
                  const std::vector<ChoiceResult>& results, uint32_t prompt_tokens);

// HTTP status for a status code: 400, 401, 404, 413, 429, 503, 504, 499 (cancelled), 500.
int HttpStatusFor(const absl::Status& status);
// The OpenAI error object for `status` ("param" from the status payload).
Json ErrorJson(const absl::Status& status);

// Serialises with invalid UTF-8 replaced (token strings can be partial characters).
std::string Dump(const Json& json);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_OPENAI_RESPONSE_H_
