// The internal token (internal_token.h) on gRPC calls: servers check the caller's
// `authorization` metadata, clients add it.
#ifndef EXPERTMESH_COMMON_GRPC_TOKEN_H_
#define EXPERTMESH_COMMON_GRPC_TOKEN_H_

#include "absl/strings/string_view.h"
#include "common/internal_token.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace expertmesh {

// OK when `token` is disabled or the call carries it; UNAUTHENTICATED naming `what` otherwise.
grpc::Status CheckCallToken(const InternalToken& token, const grpc::ServerContextBase& context,
                            absl::string_view what);

// Adds the token to a call about to start (nothing when `token` is disabled).
void AddCallToken(const InternalToken& token, grpc::ClientContext& context);

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_GRPC_TOKEN_H_
