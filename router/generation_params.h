// Plain request structs shared by the router's public APIs (gRPC and OpenAI HTTP) and its
// core. The API layers fill them from their wire formats; request_validation.h checks them.
#ifndef EXPERTMESH_ROUTER_GENERATION_PARAMS_H_
#define EXPERTMESH_ROUTER_GENERATION_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace expertmesh::router {

// What to generate from: raw text, a chat (rendered with the model's chat template) or
// already tokenized ids.
struct PromptInput {
  enum class Kind { kText, kChat, kTokens };
  Kind kind = Kind::kText;
  std::string text;
  // JSON array of message objects, in order: role, content (string, null or text parts), and
  // optionally name, tool_calls, tool_call_id, reasoning_content, reasoning.
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  // The request's `tools` (chat only); unset renders the template's `tools` as None.
  std::optional<nlohmann::ordered_json> tools;
  // tool_choice "none": the output is not read for tool calls.
  bool tool_choice_none = false;
  // tool_choice "required" (one or more calls) or a named function (exactly that call): the
  // output is constrained to the model's tool-call format (router/tool_call_grammar.h).
  bool tool_choice_required = false;
  std::string tool_choice_function;  // the named function; empty: none named
  bool add_generation_prompt = true;
  std::vector<int32_t> token_ids;
};

// Constrained decoding as the client asked for it (router/output_constraint.h): the output must
// be JSON of a schema, any JSON object, a regex match, one of a list of strings, or a sentence
// of a GBNF grammar.
struct OutputConstraint {
  enum class Kind { kNone, kJsonSchema, kJsonObject, kRegex, kChoice, kGrammar };
  Kind kind = Kind::kNone;
  // kJsonSchema: the schema as JSON text; kRegex: the pattern; kGrammar: GBNF text.
  std::string text;
  std::vector<std::string> choices;  // kChoice
  // The request field it came from ("response_format", "structured_outputs.regex",
  // "guided_json", ...): errors name it.
  std::string field;
};

// Sampling and stopping, as the client asked. Unset optionals take the worker's defaults.
struct GenerationParams {
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<float> presence_penalty;
  std::optional<float> frequency_penalty;
  std::optional<uint64_t> seed;
  std::optional<int64_t> max_tokens;
  // Used when max_tokens is unset, cut to the room the prompt leaves (a default the client did
  // not write never fails a request); unset: up to the context. /v1/completions sets 16.
  std::optional<int64_t> default_max_tokens;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool logprobs = false;
  int64_t top_logprobs = 0;
  // Score the prompt tokens with this many alternatives (vLLM's prompt_logprobs, 0..20); the
  // worker then computes the whole prompt (no prefix-cache reuse). Unset: off.
  std::optional<int64_t> prompt_logprobs;
  int64_t n = 1;
  OutputConstraint constraint;
};

// Why one choice ended (the public proto's FinishReason without "unspecified").
enum class FinishReason { kStop, kLength, kStopString, kAbort, kError };

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_GENERATION_PARAMS_H_
