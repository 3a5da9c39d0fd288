// Reasoning content for models that think before they answer (DeepSeek-R1, Qwen3, QwQ: the
// chat template writes `<think>`). Their output is `<think>reasoning</think>answer`, or, where
// the template already opened the think block in the prompt (R1's generation prompt ends in
// `<think>\n`), `reasoning</think>answer`. OpenAI-compatible servers return the two parts apart:
// `reasoning_content` and `content` (vLLM's and SGLang's reasoning parsers, DeepSeek's API).
#ifndef EXPERTMESH_ROUTER_REASONING_SPLIT_H_
#define EXPERTMESH_ROUTER_REASONING_SPLIT_H_

#include <string>
#include <string_view>

namespace expertmesh::router {

inline constexpr std::string_view kThinkStart = "<think>";
inline constexpr std::string_view kThinkEnd = "</think>";

// How a chat's output begins, from its template and rendered prompt.
enum class ReasoningStart {
  kNone,         // the template never thinks: all output is content
  kMaybe,        // content, unless the output opens with <think> (after whitespace)
  kInReasoning,  // the prompt left a <think> open: reasoning until </think>
};

// kNone unless `chat_template` writes <think>; then kInReasoning when the rendered prompt's last
// <think> has no </think> after it, else kMaybe.
ReasoningStart ReasoningStartOf(std::string_view chat_template, std::string_view rendered_prompt);

// Splits one choice's output text, fed in pieces as it streams, into reasoning and content. A
// tag may arrive cut anywhere: text that could still be the start of the tag being looked for
// is held back until it can be told apart (or Finish). Only the first think block counts: a
// <think> later in the answer is content. Whitespace right after </think> (the templates' "\n\n")
// is dropped, as are the tags themselves.
class ReasoningSplitter {
 public:
  explicit ReasoningSplitter(ReasoningStart start);

  struct Parts {
    std::string reasoning;
    std::string content;
  };
  // The parts of `text` that can be told apart now.
  Parts Feed(std::string_view text);
  // Whatever was held back, as what it is: content, or the reasoning of an unfinished block.
  Parts Finish();

 private:
  enum class State { kBeforeStart, kReasoning, kAfterEnd, kContent };
  void Drain(Parts& out, bool final);

  State state_;
  std::string pending_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_REASONING_SPLIT_H_
