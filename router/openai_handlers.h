// Handlers of POST /v1/completions and /v1/chat/completions: parse, validate, admit, generate,
// and answer as JSON or as an SSE stream ("data: {chunk}\n\n" ... "data: [DONE]\n\n").
// A failure after streaming started is sent as a final `data: {"error": {...}}` event.
#ifndef EXPERTMESH_ROUTER_OPENAI_HANDLERS_H_
#define EXPERTMESH_ROUTER_OPENAI_HANDLERS_H_

#include "absl/time/time.h"
#include "router/router_core.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace expertmesh::router {

void HandleOpenAiGeneration(RouterCore* core, bool chat, absl::Duration timeout,
                            const httplib::Request& req, httplib::Response& res);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_OPENAI_HANDLERS_H_
