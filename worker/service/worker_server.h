// WorkerServer: the leader's gRPC server: the Worker service plus grpc.health.v1 (the
// library's default health service; "" reports SERVING while the worker takes requests).
//
// Shutdown order (SIGTERM): readiness NOT_SERVING at once (routers stop sending), in-flight
// streams drain until the grace period ends, the rest end with UNAVAILABLE, the server stops.
#ifndef EXPERTMESH_WORKER_SERVICE_WORKER_SERVER_H_
#define EXPERTMESH_WORKER_SERVICE_WORKER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "worker/service/worker_service.h"
#include "worker/serving/engine_loop.h"

namespace expertmesh::server {

struct WorkerServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 = a free port (see port())
  WorkerServiceOptions service;
  // Plaintext unless given (GrpcServerCredentials(--tls-cert, --tls-key) for TLS).
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

class WorkerServer {
 public:
  // Serves `loop` (which must outlive the server and be started). UNAVAILABLE naming the
  // address when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<WorkerServer>> Start(EngineLoop* loop,
                                                             const WorkerServerOptions& options);
  // Shutdown(0) if not done yet.
  ~WorkerServer();

  int port() const { return port_; }

  // grpc.health.v1 status of "" (and of the Worker service name).
  void SetServing(bool serving);

  // NOT_SERVING, drain the loop until `grace` passes, stop the server. Returns the number of
  // requests that were cut off. Idempotent.
  int32_t Shutdown(absl::Duration grace);

 private:
  WorkerServer(EngineLoop* loop, std::unique_ptr<WorkerService> service,
               std::unique_ptr<grpc::Server> server, int port)
      : loop_(loop), service_(std::move(service)), server_(std::move(server)), port_(port) {}

  EngineLoop* const loop_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
  const int port_;
  bool shut_down_ = false;
};

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVICE_WORKER_SERVER_H_
