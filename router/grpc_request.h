// expertmesh.v1.GenerateRequest -> the router's plain request structs, as the OpenAI HTTP API's
// parsing (openai_request.h) fills them: prompt, sampling, stop criteria, the structured-output
// constraint oneof, and a chat's tools, tool choice and replayed tool calls.
#ifndef EXPERTMESH_ROUTER_GRPC_REQUEST_H_
#define EXPERTMESH_ROUTER_GRPC_REQUEST_H_

#include "absl/status/status.h"
#include "expertmesh/v1/inference.pb.h"
#include "router/generation_params.h"

namespace expertmesh::router {

// INVALID_ARGUMENT without a prompt, for tool parameters or call arguments that are not JSON
// text, an empty choice list, or a tool choice ParseToolChoice refuses. Whether a constraint can
// be met is checked later (RouterCore::Prepare).
absl::Status FromPublicRequest(const ::expertmesh::v1::GenerateRequest& r, PromptInput* input,
                               GenerationParams* p);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_GRPC_REQUEST_H_
