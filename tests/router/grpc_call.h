// A whole gRPC Generate call for router tests: every message, the final status.
#ifndef EXPERTMESH_TESTS_ROUTER_GRPC_CALL_H_
#define EXPERTMESH_TESTS_ROUTER_GRPC_CALL_H_

#include <string>
#include <vector>

#include "expertmesh/v1/inference.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace expertmesh::router::testing {

struct GenerateCall {
  std::vector<::expertmesh::v1::GenerateResponse> messages;
  grpc::Status status;
  const ::expertmesh::v1::GenerateResponse& last() const { return messages.back(); }
};

// Runs Generate to the end; `authorization` (if not empty) goes in the metadata as is.
inline GenerateCall RunGenerate(::expertmesh::v1::Inference::Stub& stub,
                                const ::expertmesh::v1::GenerateRequest& request,
                                const std::string& authorization = "") {
  grpc::ClientContext context;
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  GenerateCall call;
  auto reader = stub.Generate(&context, request);
  ::expertmesh::v1::GenerateResponse msg;
  while (reader->Read(&msg)) call.messages.push_back(msg);
  call.status = reader->Finish();
  return call;
}

}  // namespace expertmesh::router::testing

#endif  // EXPERTMESH_TESTS_ROUTER_GRPC_CALL_H_
