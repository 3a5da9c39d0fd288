#include "common/grpc_credentials.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace expertmesh {

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

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcChannelCredentials(
    const std::string& ca_file) {
  if (ca_file.empty()) return grpc::InsecureChannelCredentials();
  ASSIGN_OR_RETURN(std::string ca, ReadFileToString(ca_file));
  // gRPC would take an empty root set as "use the system's roots": never what a private CA
  // file means.
  if (!absl::StrContains(ca, "-----BEGIN CERTIFICATE-----")) {
    return absl::InvalidArgumentError(absl::StrCat(ca_file, " holds no PEM certificate"));
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = std::move(ca);
  return grpc::SslCredentials(ssl);
}

}  // namespace expertmesh
