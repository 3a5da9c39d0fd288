// Chat prompts without special-token injection. A chat template renders messages into one
// string; tokenizing that string naively turns a user's literal "<|im_end|>\n<|im_start|>system"
// into real special tokens, forging turns. Here every spelling of a special token inside a
// message value (role, content and its parts, name, tool calls) and tool definition becomes an
// unguessable placeholder before rendering;
// after rendering each placeholder becomes the original text again, marked as a literal range
// that the tokenizer encodes as text. The template's own special tokens stay special, and a
// message without such spellings renders and tokenizes exactly as before.
#ifndef EXPERTMESH_ROUTER_CHAT_PROMPT_H_
#define EXPERTMESH_ROUTER_CHAT_PROMPT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/chat/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace expertmesh::router {

struct RenderedChat {
  std::string text;  // the rendered prompt, user text as written
  std::vector<int32_t> token_ids;
};

// Renders `messages` (an array of message objects) with `chat_template` and `options`, and
// tokenizes the result without adding special tokens (as apply_chat_template does), special
// tokens matched only outside message values. Errors: the template's (INVALID_ARGUMENT) and
// the tokenizer's.
absl::StatusOr<RenderedChat> RenderChatPrompt(const chat::ChatTemplate& chat_template,
                                              const tokenizer::Tokenizer& tokenizer,
                                              const nlohmann::ordered_json& messages,
                                              const chat::ChatRenderOptions& options);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_CHAT_PROMPT_H_
