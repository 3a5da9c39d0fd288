#include "common/grpc_token.h"

#include <string>

namespace expertmesh {

grpc::Status CheckCallToken(const InternalToken& token, const grpc::ServerContextBase& context,
                            absl::string_view what) {
  if (!token.enabled()) return grpc::Status::OK;
  absl::string_view sent;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    sent = absl::string_view(it->second.data(), it->second.size());
  }
  const absl::Status status = token.Check(sent, what);
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(status.message()));
}

void AddCallToken(const InternalToken& token, grpc::ClientContext& context) {
  if (token.enabled()) context.AddMetadata("authorization", token.authorization());
}

}  // namespace expertmesh
