// Credentials of the public gRPC port from the --tls-cert / --tls-key PEM files. Both files
// mean TLS, neither means plaintext; one without the other is a startup error, never a
// silent fallback to plaintext.
#ifndef EXPERTMESH_ROUTER_GRPC_CREDENTIALS_H_
#define EXPERTMESH_ROUTER_GRPC_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace expertmesh::router {

// INVALID_ARGUMENT naming the missing flag when only one of the two is set; the file
// reader's error (naming the file) when one cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const std::string& cert_file, const std::string& key_file);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_GRPC_CREDENTIALS_H_
