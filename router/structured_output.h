// Structured output at the router: a request's output constraint (response_format,
// structured_outputs, guided_*) or tool_choice "required" / a named function, compiled to the
// GBNF text the worker enforces (SubmitRequest.grammar). Compiling here means a constraint that
// cannot be met (an invalid schema or regex, a schema no value satisfies, an unknown function)
// is a 400 before any worker sees the request, and workers only ever parse GBNF.
//
// For chats of a model that thinks, the constraint covers the answer only: the grammar first
// lets the reasoning through (to the first </think>; opened by the prompt, or optionally by the
// model when the template merely may think) and a little whitespace.
#ifndef EXPERTMESH_ROUTER_STRUCTURED_OUTPUT_H_
#define EXPERTMESH_ROUTER_STRUCTURED_OUTPUT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/grammar/ast.h"
#include "router/generation_params.h"
#include "router/grammar_text_cache.h"
#include "router/reasoning_split.h"
#include "router/tool_calls.h"

namespace expertmesh::router {

// The grammar of one constraint (kind not kNone). INVALID_ARGUMENT with the front end's reason.
absl::StatusOr<grammar::Grammar> ConstraintGrammar(const OutputConstraint& constraint);

// `answer` behind the reasoning `start` lets through (kNone: `answer` itself).
grammar::Grammar WithReasoning(const grammar::Grammar& answer, ReasoningStart start);

// Thread safety: GrammarText may be called concurrently.
class StructuredOutputCompiler {
 public:
  StructuredOutputCompiler(size_t cache_entries = 256, size_t cache_bytes = 32 << 20)
      : cache_(cache_entries, cache_bytes) {}

  // The GBNF text for a request: from `constraint`, or from the tool choice of a chat `input`
  // (kRequired / kFunction, in the call format of `chat_template`); "" when neither constrains
  // the output. INVALID_ARGUMENT (param payload: the request field at fault) when the
  // constraint does not compile or can never complete, when a constraint is combined with a
  // required tool call, or when the template shows no tool-call format.
  absl::StatusOr<std::string> GrammarText(const OutputConstraint& constraint,
                                          const PromptInput& input, ReasoningStart start,
                                          std::string_view chat_template) const;

  const GrammarTextCache& cache() const { return cache_; }

 private:
  mutable GrammarTextCache cache_;  // thread-safe; a cache, not state
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_STRUCTURED_OUTPUT_H_
