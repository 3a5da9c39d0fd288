// The internal gRPC `expertmesh.internal.v1.Worker` service of a group leader, over an
// EngineLoop (callback API: no thread is held per stream).
//   Submit  server-streaming: the request goes to the engine loop; tokens come back as the
//           steps produce them (coalesced when the client reads slower than the engine).
//           INVALID_ARGUMENT / ALREADY_EXISTS from the engine's validation, UNAVAILABLE while
//           draining, RESOURCE_EXHAUSTED when the queue is full, INTERNAL when a step fails.
//           A request with a grammar is compiled here, on the gRPC thread, before it reaches
//           the engine loop (whose steps it must not stall); a grammar that does not parse or
//           compile, or one sent to a worker without a vocabulary for grammars, is refused
//           with INVALID_ARGUMENT and nothing else changes.
//           Cancelling the call (client gone, deadline) aborts the request and frees its KV.
//   Abort   by request id; aborted=false when it was not live. The stream ends with a last
//           message carrying STOP_REASON_ABORTED.
//   GetLoad the loop's latest load snapshot.
// With an internal token configured every call must carry it (UNAUTHENTICATED otherwise,
// before anything else is looked at); grpc.health.v1 stays open for the kubelet's probes.
#ifndef EXPERTMESH_WORKER_SERVICE_WORKER_SERVICE_H_
#define EXPERTMESH_WORKER_SERVICE_WORKER_SERVICE_H_

#include <memory>

#include "common/internal_token.h"
#include "expertmesh/internal/v1/worker.grpc.pb.h"
#include "worker/grammar/grammar_compiler.h"
#include "worker/serving/engine_loop.h"

namespace expertmesh::server {

struct WorkerServiceOptions {
  int tp = 1;  // reported in LoadReport
  int ep = 1;
  // The group's credential (internal_token.h); disabled: every caller is served.
  InternalToken token;
  // Compiles SubmitRequest.grammar; null: every request with a grammar is refused.
  std::shared_ptr<const worker::GrammarCompiler> grammars;
};

class WorkerService final : public ::expertmesh::internal::v1::Worker::CallbackService {
 public:
  // `loop` must outlive the service.
  WorkerService(EngineLoop* loop, WorkerServiceOptions options)
      : loop_(loop), options_(std::move(options)) {}

  grpc::ServerWriteReactor<::expertmesh::internal::v1::SubmitResponse>* Submit(
      grpc::CallbackServerContext* context,
      const ::expertmesh::internal::v1::SubmitRequest* request) override;

  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const ::expertmesh::internal::v1::AbortRequest* request,
                                  ::expertmesh::internal::v1::AbortResponse* response) override;

  grpc::ServerUnaryReactor* GetLoad(grpc::CallbackServerContext* context,
                                    const ::expertmesh::internal::v1::GetLoadRequest* request,
                                    ::expertmesh::internal::v1::LoadReport* response) override;

 private:
  EngineLoop* const loop_;
  const WorkerServiceOptions options_;
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVICE_WORKER_SERVICE_H_
