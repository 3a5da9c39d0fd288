// Request ids made by the router. Internal ids key a request on the workers
// (model/request/request_id.h) and never leave the router's side of the cluster; public ids
// name a response to its client (OpenAI "id", X-Request-Id) and mean nothing to a worker.
// Both are 128 random bits from the kernel's CSPRNG (getrandom), so neither can be guessed
// from earlier ones.
//
// Thread safety: all functions may be called from any thread.
#ifndef EXPERTMESH_ROUTER_REQUEST_IDS_H_
#define EXPERTMESH_ROUTER_REQUEST_IDS_H_

#include <string>

namespace expertmesh::router {

// "rq-" + 32 hex digits; IsRouterRequestId() holds for it.
std::string NewInternalRequestId();

// 32 hex digits, unrelated to any internal id (callers add "chatcmpl-" and the like).
std::string NewPublicRequestId();

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_REQUEST_IDS_H_
