// One router process's servers and their lifecycle: worker pool, request core, HTTP and gRPC
// front ends. Start binds both ports; Shutdown stops accepting, turns readiness off, drains
// in-flight streams within the grace period, then stops everything.
#ifndef EXPERTMESH_ROUTER_ROUTER_SERVER_H_
#define EXPERTMESH_ROUTER_ROUTER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "router/api_keys.h"
#include "router/grpc_service.h"
#include "router/http_server.h"
#include "router/router_core.h"
#include "router/worker_pool.h"

namespace expertmesh::router {

struct RouterServerOptions {
  std::string model_dir;
  std::string model_name;  // empty: the directory name
  std::string host = "127.0.0.1";
  int http_port = 0;  // 0: pick a free port; -1: no HTTP
  int grpc_port = 0;  // 0: pick a free port; -1: no gRPC
  std::string tls_cert_file;
  std::string tls_key_file;
  ApiKeys api_keys;
  WorkerPoolOptions pool;
  RouterCoreOptions core;
  absl::Duration http_request_timeout = absl::InfiniteDuration();
  // Connection, header, body and time limits of the HTTP front door (body size from core).
  http::HttpLimits http_limits;
  // Admin HTTP listener (/metrics and probes, no key): -1 none, 0 any free port.
  std::string admin_host = "127.0.0.1";
  int admin_port = -1;
};

class RouterServer {
 public:
  // Loads the model files and starts everything. Errors name the failing part.
  static absl::StatusOr<std::unique_ptr<RouterServer>> Start(RouterServerOptions options);
  ~RouterServer();

  int http_port() const { return http_port_; }
  int grpc_port() const { return grpc_port_; }
  int admin_port() const { return http_ ? http_->admin_port() : -1; }
  // Open HTTP connections on the public port (0 without HTTP).
  int http_connections() const { return http_ ? http_->open_connections() : 0; }
  RouterCore& core() { return *core_; }
  WorkerPool& pool() { return *pool_; }

  // Graceful shutdown (idempotent). Returns the number of streams cut at the grace deadline.
  int Shutdown(absl::Duration grace);

 private:
  RouterServer() = default;

  RouterServerOptions options_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<RouterCore> core_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  int http_port_ = -1;
  int grpc_port_ = -1;
  bool shut_down_ = false;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_ROUTER_SERVER_H_
