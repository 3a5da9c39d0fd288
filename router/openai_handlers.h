// Handlers of POST /v1/completions and /v1/chat/completions: parse, validate, admit, generate,
// and answer as JSON or as an SSE stream ("data: {chunk}\n\n" ... "data: [DONE]\n\n").
// A failure after streaming started is sent as a final `data: {"error": {...}}` event.
// A client that disconnects cancels its request, streaming or not.
#ifndef EXPERTMESH_ROUTER_OPENAI_HANDLERS_H_
#define EXPERTMESH_ROUTER_OPENAI_HANDLERS_H_

#include "absl/time/time.h"
#include "router/api_keys.h"
#include "router/http/http_exchange.h"
#include "router/router_core.h"

namespace expertmesh::router {

// `keys` names the caller's tenant (its prefix-cache salt).
void HandleOpenAiGeneration(RouterCore* core, const ApiKeys& keys, bool chat,
                            absl::Duration timeout, const http::HttpRequest& req,
                            http::ResponseWriter& res);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_OPENAI_HANDLERS_H_
