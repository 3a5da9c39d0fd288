// Hugging Face chat templates: a Jinja subset interpreter configured as transformers configures
// jinja2 (trim_blocks, lstrip_blocks, loopcontrols, raise_exception, strftime_now, a tojson that
// is json.dumps(ensure_ascii=False)). No C++ Jinja library in Debian covers these templates, so
// the interpreter is our own: lexer.h -> parser.h -> evaluator.h over value.h.
//
// Thread safety: a ChatTemplate is immutable after Parse; Render may run concurrently.
#ifndef EXPERTMESH_MODEL_CHAT_CHAT_TEMPLATE_H_
#define EXPERTMESH_MODEL_CHAT_CHAT_TEMPLATE_H_

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/chat/evaluator.h"
#include "nlohmann/json.hpp"

namespace expertmesh::chat {

class ChatTemplate {
 public:
  // Errors: InvalidArgument "chat template syntax error at line L, column C: ..." for any
  // syntax error or construct outside the supported subset (includes, extends, blocks, ...).
  static absl::StatusOr<ChatTemplate> Parse(std::string_view source);

  // Renders with `context` (a JSON object) as the template variables. Object key order is kept
  // (tojson and items() list keys as given). Errors as Evaluate() in evaluator.h:
  // InvalidArgument with exactly the message for raise_exception(msg), InvalidArgument with a
  // position for runtime errors, ResourceExhausted past `options.limits`.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context,
                                     const EvalOptions& options = {}) const;

 private:
  struct Parsed;
  explicit ChatTemplate(std::shared_ptr<const Parsed> parsed) : parsed_(std::move(parsed)) {}
  std::shared_ptr<const Parsed> parsed_;
};

struct ChatRenderOptions {
  bool add_generation_prompt = false;
  std::string bos_token;
  std::string eos_token;
  // OpenAI-style tool definitions; unset renders `tools` as None, as transformers does.
  std::optional<nlohmann::ordered_json> tools;
  // Further template variables (enable_thinking, date_string, builtin_tools, ...). They are set
  // last, so they may override the fields above.
  nlohmann::ordered_json extra_kwargs = nlohmann::ordered_json::object();
  // The time strftime_now() formats (tests fix it); unset means now.
  std::optional<std::tm> now;
  RenderLimits limits;
};

// Renders `messages` (a JSON array of {role, content, ...}) the way transformers 5.x
// apply_chat_template(tokenize=False) does: variables messages, tools, documents (None),
// add_generation_prompt, bos_token, eos_token, then extra_kwargs. Messages are preprocessed as
// transformers does: a message's reasoning (reasoning_content, thinking or reasoning) is copied
// to both `thinking` and `reasoning_content`. Nothing else changes: keys whose value is null
// (an assistant's `content: null` beside tool_calls) stay, as None, as transformers keeps them.
// Errors: InvalidArgument when messages is not an array or extra_kwargs not an object, plus
// those of ChatTemplate::Render.
absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat_template,
                                       const nlohmann::ordered_json& messages,
                                       const ChatRenderOptions& options);

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_CHAT_TEMPLATE_H_
