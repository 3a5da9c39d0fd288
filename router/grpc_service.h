// The public gRPC API, expertmesh.v1.Inference, on the callback API: Generate streams through
// a write reactor. Authentication and request conversion happen on the gRPC thread; the
// blocking part (admission, then tokenization, then generation) runs on a bounded pool of
// producer threads, one per admitted call; a call beyond the pool is RESOURCE_EXHAUSTED. The
// reactor writes one message at a time and Finishes once the producer is done; OnCancel
// aborts the generation.
// API keys, when configured, are checked in the "authorization: Bearer <key>" metadata.
// The worker key of a request is always an id the router mints; a client's request_id is only
// echoed back to that client.
#ifndef EXPERTMESH_ROUTER_GRPC_SERVICE_H_
#define EXPERTMESH_ROUTER_GRPC_SERVICE_H_

#include <functional>
#include <string>

#include "common/bounded_executor.h"
#include "expertmesh/v1/inference.grpc.pb.h"
#include "router/api_keys.h"
#include "router/router_core.h"

namespace expertmesh::router {

class InferenceService final : public ::expertmesh::v1::Inference::CallbackService {
 public:
  InferenceService(RouterCore* core, const ApiKeys* keys);
  // Waits for every producer to end.
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

  // Runs `task` on the producer pool; false when the pool is full.
  bool ScheduleProducer(std::function<void()> task) {
    return producers_.TrySubmit(std::move(task));
  }
  const ApiKeys& keys() const { return *keys_; }

  // The "authorization" metadata value (empty when absent).
  static std::string AuthorizationOf(const grpc::CallbackServerContext* context);

 private:
  absl::Status Authorize(grpc::CallbackServerContext* context) const;
  void FillModelInfo(::expertmesh::v1::ModelInfo* info) const;

  RouterCore* core_;
  const ApiKeys* keys_;
  // As many producers as admission can hold (running plus queued); declared last so that it
  // is destroyed, and its threads joined, first.
  BoundedExecutor producers_;
};

grpc::Status ToGrpc(const absl::Status& status);

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_GRPC_SERVICE_H_
