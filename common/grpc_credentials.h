// TLS credentials of our gRPC servers and clients from PEM files: the router's public port,
// the worker's internal port, and the router's channels to the workers.
#ifndef EXPERTMESH_COMMON_GRPC_CREDENTIALS_H_
#define EXPERTMESH_COMMON_GRPC_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace expertmesh {

// From the --tls-cert / --tls-key PEM files. Both files mean TLS, neither means plaintext;
// one without the other is INVALID_ARGUMENT naming the missing flag, never a silent fallback
// to plaintext. The file reader's error (naming the file) when one cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const std::string& cert_file, const std::string& key_file);

// A client's credentials: TLS trusting only the CA certificates of `ca_file` (PEM) when it is
// set, plaintext when it is empty. The file reader's error (naming the file) when it cannot
// be read; INVALID_ARGUMENT when it holds no PEM certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcChannelCredentials(
    const std::string& ca_file);

}  // namespace expertmesh

#endif  // EXPERTMESH_COMMON_GRPC_CREDENTIALS_H_
