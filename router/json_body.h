// Parses a request body as JSON with a nesting limit that is enforced while parsing: the DOM
// builder refuses to open container number max_depth + 1, so a body of 80,000 nested arrays
// costs a bounded amount of stack and memory (nlohmann's recursive destruction and copies of a
// deep value would otherwise overflow the stack). Used for every JSON body a client sends.
#ifndef EXPERTMESH_ROUTER_JSON_BODY_H_
#define EXPERTMESH_ROUTER_JSON_BODY_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace expertmesh::router {

// Deepest nesting of objects and arrays a request body may have. OpenAI bodies need about 5
// (body -> messages -> message -> content parts -> part); 64 leaves room for any client.
inline constexpr int kMaxJsonDepth = 64;

// The parsed `text`. INVALID_ARGUMENT when it is not valid JSON (the message names the
// position) or nests deeper than `max_depth`. Never throws.
absl::StatusOr<nlohmann::ordered_json> ParseJsonBody(std::string_view text,
                                                     int max_depth = kMaxJsonDepth);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_JSON_BODY_H_
