// Request limits and validation at the router's boundary. Every error is INVALID_ARGUMENT
// (or RESOURCE_EXHAUSTED for size limits) with a message naming the field, and carries the
// field's OpenAI parameter name as payload kParamPayload so the HTTP layer can fill "param".
#ifndef EXPERTMESH_ROUTER_REQUEST_VALIDATION_H_
#define EXPERTMESH_ROUTER_REQUEST_VALIDATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/generation_params.h"

namespace expertmesh::router {

inline constexpr absl::string_view kParamPayload = "expertmesh.dev/param";

struct RouterLimits {
  // Largest accepted request body (HTTP) or message (gRPC), in bytes.
  size_t max_request_bytes = 4 << 20;
  // Largest prompt in tokens; 0 means the model's context length minus one.
  int64_t max_prompt_tokens = 0;
  // Cap on max_tokens; 0 means no cap beyond the context length.
  int64_t max_tokens_cap = 0;
  int64_t max_n = 16;
  int64_t max_stop_strings = 16;
  size_t max_stop_string_bytes = 256;
  int64_t max_stop_token_ids = 64;
  int64_t max_chat_messages = 1024;
};

// INVALID_ARGUMENT (with a param payload) when a sampling or stop value is out of range.
absl::Status ValidateParams(const GenerationParams& params, const RouterLimits& limits);

// The max_tokens to send to the worker for a prompt of `prompt_tokens` tokens, given the
// model's context length. Unset `requested` means `default_max_tokens` cut to the room the
// prompt leaves, or without a default "up to the context length" (both under the cap).
// INVALID_ARGUMENT (param "messages"/"prompt" or "max_tokens") when the prompt leaves no
// room, is over limits.max_prompt_tokens, or prompt + max_tokens exceeds the context.
absl::StatusOr<uint32_t> ResolveMaxTokens(int64_t prompt_tokens,
                                          const std::optional<int64_t>& requested,
                                          int64_t context_length, const RouterLimits& limits,
                                          std::optional<int64_t> default_max_tokens = std::nullopt);

// An INVALID_ARGUMENT status for `param` with `message`.
absl::Status InvalidParam(absl::string_view param, absl::string_view message);
// The param payload of `status`, or empty.
std::string ParamOf(const absl::Status& status);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_REQUEST_VALIDATION_H_
