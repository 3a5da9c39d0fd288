// OpenAI request bodies (/v1/completions, /v1/chat/completions) -> the router's plain structs.
// Unknown fields are ignored, as OpenAI-compatible servers do; known fields with the wrong
// type are INVALID_ARGUMENT naming the field (payload kParamPayload).
#ifndef EXPERTMESH_ROUTER_OPENAI_REQUEST_H_
#define EXPERTMESH_ROUTER_OPENAI_REQUEST_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "router/generation_params.h"

namespace expertmesh::router {

struct OpenAiRequest {
  bool chat = false;
  std::string model;
  PromptInput input;
  GenerationParams params;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Completions only (refused on chat): prepend the prompt's text to every choice's text. With
  // logprobs, choices[].logprobs starts with the prompt's tokens (params.prompt_logprobs is set
  // so the worker scores them), as OpenAI's legacy API and vLLM do.
  bool echo = false;
  // vLLM's prompt_logprobs as the client sent it (0..20): the choice (completions) or the
  // response (chat) carries a "prompt_logprobs" list. Refused with stream, as vLLM does.
  std::optional<int64_t> prompt_logprobs;
};

// max_tokens of a /v1/completions request that does not set it (OpenAI's and vLLM's value).
inline constexpr int64_t kCompletionsDefaultMaxTokens = 16;

// Parses a body. `chat` selects the chat-completions schema. INVALID_ARGUMENT for malformed
// JSON (message names the position) or bad field types / missing required fields.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(const std::string& body, bool chat);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_OPENAI_REQUEST_H_
