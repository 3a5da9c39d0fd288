// The public gRPC API, expertmesh.v1.Inference, on the callback API: Generate streams through
// a write reactor (one producer thread per call runs the generation; the reactor writes one
// message at a time and Finishes once the producer is done; OnCancel aborts the generation).
// API keys, when configured, are checked in the "authorization: Bearer <key>" metadata.
#ifndef EXPERTMESH_ROUTER_GRPC_SERVICE_H_
#define EXPERTMESH_ROUTER_GRPC_SERVICE_H_

#include "absl/synchronization/mutex.h"
#include "expertmesh/v1/inference.grpc.pb.h"
#include "router/api_keys.h"
#include "router/router_core.h"

namespace expertmesh::router {

class InferenceService final : public ::expertmesh::v1::Inference::CallbackService {
 public:
  InferenceService(RouterCore* core, const ApiKeys* keys) : core_(core), keys_(keys) {}
  // Waits for every producer thread to end.
  ~InferenceService() override;

  grpc::ServerWriteReactor<::expertmesh::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context,
      const ::expertmesh::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const ::expertmesh::v1::TokenizeRequest* request,
                                     ::expertmesh::v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const ::expertmesh::v1::ListModelsRequest* request,
                                       ::expertmesh::v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const ::expertmesh::v1::GetModelInfoRequest* request,
                                         ::expertmesh::v1::ModelInfo* response) override;

  // Producer-thread bookkeeping (used by the reactor).
  void ThreadStarted();
  void ThreadEnded();

 private:
  absl::Status Authorize(grpc::CallbackServerContext* context) const;
  void FillModelInfo(::expertmesh::v1::ModelInfo* info) const;

  RouterCore* core_;
  const ApiKeys* keys_;
  absl::Mutex mu_;
  int producers_ ABSL_GUARDED_BY(mu_) = 0;
};

grpc::Status ToGrpc(const absl::Status& status);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_GRPC_SERVICE_H_
