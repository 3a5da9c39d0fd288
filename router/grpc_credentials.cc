#include "router/grpc_credentials.h"

#include "common/file_util.h"
#include "common/status_macros.h"
#include "grpcpp/security/server_credentials.h"

namespace expertmesh::router {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() && key_file.empty()) return grpc::InsecureServerCredentials();
  if (cert_file.empty()) {
    return absl::InvalidArgumentError("--tls-key was given without --tls-cert");
  }
  if (key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert was given without --tls-key");
  }
  ASSIGN_OR_RETURN(std::string cert, ReadFileToString(cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadFileToString(key_file));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace expertmesh::router
