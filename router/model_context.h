// Everything the router knows about the model it serves, loaded once from the model directory
// (tokenizer.json, tokenizer_config.json, generation_config.json, config.json): tokenizer,
// chat template, context length, model info. Turns a PromptInput into token ids.
//
// Thread safety: immutable after Load; every const method may run concurrently.
#ifndef EXPERTMESH_ROUTER_MODEL_CONTEXT_H_
#define EXPERTMESH_ROUTER_MODEL_CONTEXT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/chat/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "router/generation_params.h"

namespace expertmesh::router {

struct ModelDescription {
  std::string name;
  std::string architecture;
  int64_t context_length = 0;
  int64_t vocab_size = 0;
  int64_t total_parameters = 0;
  int64_t active_parameters = 0;
  std::vector<int32_t> eos_ids;
  int32_t bos_id = -1;
  bool has_chat_template = false;
  // OpenAI's model "created": Unix seconds of the checkpoint's config.json (when the model was
  // written), or of loading when the file time cannot be read.
  int64_t created = 0;
};

struct Prompt {
  std::vector<int32_t> token_ids;
  // The chat template's output (chat prompts only).
  std::string rendered;
};

class ModelContext {
 public:
  // Loads `model_dir`. `name` is what clients call the model (empty: the directory's base
  // name). Errors from the tokenizer / config loaders name the file and the problem. A chat
  // template that does not parse is no error here: completions need no template, so the model
  // loads with chat disabled, and chat requests get the parse error (chat_template_error()).
  static absl::StatusOr<std::unique_ptr<ModelContext>> Load(const std::string& model_dir,
                                                            std::string name);

  // Tokenizes `input`: text with the tokenizer's special tokens, chats rendered with the
  // chat template and tokenized without adding special tokens (as transformers'
  // apply_chat_template does), special tokens matched only in the template's own text, never
  // in what the messages say (router/chat_prompt.h). Token-id prompts are checked against the
  // vocabulary. INVALID_ARGUMENT (param "prompt" / "messages") for malformed input, a chat without
  // a usable template (none, or one that did not parse: the message names the parse error), a
  // message count over `max_messages`, or a message whose role IsKnownRole refuses. Content
  // given as text parts reaches templates that read parts as parts, others as one string.
  absl::StatusOr<Prompt> BuildPrompt(const PromptInput& input, int64_t max_messages) const;

  // Whether chat messages may have `role`: the OpenAI roles (system, user, assistant, tool,
  // developer, function), or a name the chat template spells as a quoted literal.
  bool IsKnownRole(absl::string_view role) const;

  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  const ModelDescription& description() const { return description_; }
  // Why the model's chat template cannot be used ("" when it parsed or there is none).
  const std::string& chat_template_error() const { return chat_template_error_; }
  // The chat template's text (empty without one).
  const std::string& chat_template_source() const { return chat_template_source_; }

 private:
  ModelContext() = default;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::optional<chat::ChatTemplate> chat_template_;
  std::string chat_template_source_;   // for IsKnownRole; empty without a template
  std::string chat_template_error_;    // the parse error of a template that did not parse
  bool template_reads_parts_ = false;  // see TemplateReadsContentParts
  ModelDescription description_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_MODEL_CONTEXT_H_
