// The grammar of a tool-calling answer, in the call format the model's chat template shows it
// (the same format ToolCallSplitter reads back, tool_calls.h), for tool_choice "required" (one
// or more calls) and a named function (exactly one call of it). Each function's `parameters`
// schema constrains its arguments (JsonSchemaToGrammar, embedded under a prefix per function):
//   Hermes JSON (Qwen2.5, Qwen3, QwQ, Hermes):
//     <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   (calls joined by "\n")
//   Qwen3-Coder / Qwen3.5 (<function=...> in the template):
//     <tool_call>\n<function=f>\n<parameter=k>\nVALUE\n</parameter>\n...</function>\n</tool_call>
//   GLM-4.5 / 4.6 (<arg_key> in the template):
//     <tool_call>f\n<arg_key>k</arg_key>\n<arg_value>VALUE</arg_value>\n...</tool_call>
//   DeepSeek V3 / R1-0528 (```json in the template) and V3.1 (without):
//     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{...}\n```
//     <｜tool▁call▁end｜>...<｜tool▁calls▁end｜>, or
//     ...<｜tool▁call▁begin｜>f<｜tool▁sep｜>{...}...
//   Llama 3.1-3.3:  {"name": "f", "parameters": {...}}   (calls joined by "; ")
// In the XML-style bodies a value is raw text where the parser keeps text (the schema types the
// property "string" or not at all: an enum of strings is one of them, a string const that
// string, minLength / maxLength bound it; pattern and format are not enforced there) and JSON of
// the property's schema otherwise; properties come in schema order, the required ones always,
// the others optionally.
#ifndef EXPERTMESH_ROUTER_TOOL_CALL_GRAMMAR_H_
#define EXPERTMESH_ROUTER_TOOL_CALL_GRAMMAR_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"
#include "nlohmann/json.hpp"
#include "router/tool_calls.h"

namespace expertmesh::router {

// The shape of one call inside the format's markers, from the chat template.
enum class ToolCallBody {
  kJson,            // Hermes: {"name", "arguments"}
  kFunctionTags,    // Qwen3-Coder / Qwen3.5: <function=NAME><parameter=KEY>
  kArgKeys,         // GLM: NAME<arg_key>KEY</arg_key><arg_value>
  kDeepSeekFenced,  // DeepSeek V3 / R1: function<｜tool▁sep｜>NAME\n```json\n{...}\n```
  kDeepSeekPlain,   // DeepSeek V3.1: NAME<｜tool▁sep｜>{...}
  kLlamaJson,       // Llama 3: {"name", "parameters"}
};
ToolCallBody ToolCallBodyOf(ToolCallFormat format, std::string_view chat_template);

// The answer grammar for `choice` (kRequired or kFunction) over `tools` (the request's OpenAI
// tools array). INVALID_ARGUMENT when `format` is kNone (the template shows no call format), a
// function has no name, or a `parameters` schema does not compile (the message names the
// function and the reason).
absl::StatusOr<grammar::Grammar> ToolCallGrammar(ToolCallFormat format, ToolCallBody body,
                                                 const nlohmann::ordered_json& tools,
                                                 const ToolChoice& choice);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_TOOL_CALL_GRAMMAR_H_
