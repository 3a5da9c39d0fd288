// The request fields that constrain a generation's output, read from an OpenAI body into one
// OutputConstraint (generation_params.h). Accepted, as OpenAI and vLLM spell them:
//   response_format: {"type": "text" | "json_object" | "json_schema",
//                     "json_schema": {"name", "schema", "strict", "description"}}
//   structured_outputs: {"json" | "regex" | "choice" | "grammar" | "json_object"}  (vLLM)
//   guided_json, guided_regex, guided_choice, guided_grammar                   (vLLM, older)
// A request takes at most one: two are INVALID_ARGUMENT naming both, as is a field of the wrong
// shape. What the constraint means is checked later, when it is compiled to a grammar
// (router/constraint_grammar.h).
#ifndef EXPERTMESH_ROUTER_OUTPUT_CONSTRAINT_H_
#define EXPERTMESH_ROUTER_OUTPUT_CONSTRAINT_H_

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "router/generation_params.h"

namespace expertmesh::router {

// Reads the constraint fields of `body` (an OpenAI request object) into `out`, which stays
// kNone when the body sets none (or response_format "text").
absl::Status ReadOutputConstraint(const nlohmann::ordered_json& body, OutputConstraint* out);

// The name of a constraint kind as the docs and errors use it ("json_schema", "regex", ...).
const char* OutputConstraintKindName(OutputConstraint::Kind kind);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_OUTPUT_CONSTRAINT_H_
