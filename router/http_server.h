// The OpenAI-compatible HTTP API on the front door (router/http/front_door.h):
// POST /v1/completions, POST /v1/chat/completions (JSON or SSE streaming), GET /v1/models,
// GET /v1/models/{id}, probes GET /healthz, /health, /readyz, and GET /metrics. Errors use
// OpenAI's error object and status codes (400, 401, 404, 405, 408, 413, 415, 429 + Retry-After,
// 431, 503).
//
// With API keys configured, every route but the probes needs a key on the public port,
// /metrics included. An optional admin listener (admin_port) serves /metrics and the probes
// without a key; bind it where only the cluster's monitoring reaches (docs/security.md).
#ifndef EXPERTMESH_ROUTER_HTTP_SERVER_H_
#define EXPERTMESH_ROUTER_HTTP_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router/api_keys.h"
#include "router/http/front_door.h"
#include "router/http/http_limits.h"
#include "router/router_core.h"

namespace expertmesh::router {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: pick a free port
  // Both set: serve HTTPS.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Per-request time limit; infinite by default (OpenAI clients send no deadline).
  absl::Duration request_timeout = absl::InfiniteDuration();
  // max_body_bytes is taken from the core's limits.
  http::HttpLimits limits;
  int io_threads = 2;
  // The admin listener: -1 none, 0 any free port.
  std::string admin_host = "127.0.0.1";
  int admin_port = -1;
};

class HttpServer {
 public:
  HttpServer(RouterCore* core, const ApiKeys* keys, HttpServerOptions options);
  ~HttpServer();

  // Binds and starts serving. Returns the bound public port (admin_port() has the other).
  // INVALID_ARGUMENT for unreadable TLS files, UNAVAILABLE when a port cannot be bound.
  absl::StatusOr<int> Start();
  // Stops accepting; open responses end (RouterCore::Drain ends their generations first).
  void Stop();

  int admin_port() const { return admin_port_; }
  int open_connections() const;

 private:
  RouterCore* core_;
  const ApiKeys* keys_;
  HttpServerOptions options_;
  std::unique_ptr<http::FrontDoor> public_;
  std::unique_ptr<http::FrontDoor> admin_;
  int admin_port_ = -1;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_HTTP_SERVER_H_
