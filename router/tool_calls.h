// Tool calls in a chat model's output, back into OpenAI's `tool_calls`. The chat template shows
// the model how to call: Qwen2.5, Qwen3, QwQ and the Hermes models write
//   <tool_call>
//   {"name": "get_weather", "arguments": {"city": "Paris"}}
//   </tool_call>
// (one block per call, text around them is content), which is what vLLM's and SGLang's
// "hermes" / "qwen25" parsers read. DeepSeek-V3 (and R1-0528, V3.1) write
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
//   ```json
//   {"city": "Paris"}
//   ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>
// or, from V3.1 on, the name and then the JSON right after the separator (vLLM's "deepseek_v3"
// and "deepseek_v31"); the outer begin/end markers are dropped. Inside <tool_call>, Qwen3-Coder
// and Qwen3.5 write <function=NAME><parameter=KEY>VALUE</parameter>...</function>, and GLM-4.6
// NAME<arg_key>KEY</arg_key><arg_value>VALUE</arg_value>...: their values are text, typed by the
// tool's JSON schema where it gives the property a non-string type (vLLM's "qwen3_coder" and
// "glm45" parsers do the same). Llama 3.1-3.3 answer a call with nothing but
//   {"name": "get_weather", "parameters": {"city": "Paris"}}
// (several joined by "; ", optionally after <|python_tag|>), as vLLM's "llama3_json" parser
// reads them: an output that starts with "{" is held to its end and is calls if it parses as
// such. A block that is none of these, has no name, or is not closed stays in the content as
// written.
#ifndef EXPERTMESH_ROUTER_TOOL_CALLS_H_
#define EXPERTMESH_ROUTER_TOOL_CALLS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace expertmesh::router {

enum class ToolCallFormat {
  kNone,    // the template shows no call format we read: output is content
  kHermes,  // <tool_call>{"name", "arguments"}</tool_call>
  kDeepSeek,  // <｜tool▁call▁begin｜>[function<｜tool▁sep｜>]name...<｜tool▁call▁end｜>
  kLlama3Json,  // the whole output: {"name", "parameters"}[; {...}]
};

// kDeepSeek when the template writes DeepSeek's tool-call markers, kHermes when it writes
// <tool_call>, kLlama3Json when it tells the model to answer {"name", "parameters"} and has
// Llama's `ipython` tool role, else kNone.
ToolCallFormat ToolCallFormatOf(std::string_view chat_template);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object as text, as OpenAI sends it
};

// The request's `tool_choice`: "none" (calls are not parsed), "auto" (the default when tools
// are given), "required" (one or more calls) or {"type": "function", "function": {"name"}}
// (exactly that call); the last two constrain the output (router/tool_call_grammar.h).
// INVALID_ARGUMENT for another value, "required" or a name without tools, or a name `tools`
// lacks.
struct ToolChoice {
  enum class Kind { kNone, kAuto, kRequired, kFunction };
  Kind kind = Kind::kAuto;
  std::string function;  // kFunction
};
absl::StatusOr<ToolChoice> ParseToolChoice(const nlohmann::ordered_json* tool_choice,
                                           const nlohmann::ordered_json* tools);

// The "function" object of the tool named `name` in `tools` (an OpenAI tools array), or
// nullptr.
const nlohmann::ordered_json* FindToolFunction(const nlohmann::ordered_json* tools,
                                               std::string_view name);

// Splits one choice's output, fed in pieces as it streams, into content and complete calls:
// text after a call's opening marker is held until its closing one (or Finish), and text that
// could be the start of a marker is held until it can be told apart.
class ToolCallSplitter {
 public:
  // `tools`: the request's tool definitions, whose schemas type XML-style values (nullptr:
  // none); they must outlive the splitter.
  explicit ToolCallSplitter(ToolCallFormat format, const nlohmann::ordered_json* tools = nullptr)
      : format_(format), tools_(tools) {}

  struct Parts {
    std::string content;
    std::vector<ToolCall> calls;
  };
  Parts Feed(std::string_view text);
  // What is held back: an unclosed block (or a partial tag) as content.
  Parts Finish();

 private:
  void Drain(Parts& out, bool final);
  void DrainLlama(Parts& out, bool final);

  ToolCallFormat format_;
  const nlohmann::ordered_json* tools_;
  bool in_call_ = false;
  // kLlama3Json: whether the output is known to be content (it did not start with a call).
  bool content_only_ = false;
  std::string pending_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_TOOL_CALLS_H_
