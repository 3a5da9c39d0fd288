// The OpenAI-compatible HTTP API (cpp-httplib): POST /v1/completions, POST /v1/chat/completions
// (JSON or SSE streaming), GET /v1/models, /healthz, /readyz, /metrics. Errors use OpenAI's
// error object and status codes (400, 401, 404, 413, 429 + Retry-After, 503).
//
// Every SSE stream holds one pool thread for its whole life, so the pool is sized for the
// router's max_active streams plus headroom for short requests.
#ifndef EXPERTMESH_ROUTER_HTTP_SERVER_H_
#define EXPERTMESH_ROUTER_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router/api_keys.h"
#include "router/router_core.h"

namespace httplib {
class Server;
}

namespace expertmesh::router {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: pick a free port
  // Both set: serve HTTPS.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Per-request time limit; infinite by default (OpenAI clients send no deadline).
  absl::Duration request_timeout = absl::InfiniteDuration();
};

class HttpServer {
 public:
  HttpServer(RouterCore* core, const ApiKeys* keys, HttpServerOptions options);
  ~HttpServer();

  // Binds and starts serving on a background thread. Returns the bound port.
  // INVALID_ARGUMENT for unreadable TLS files, UNAVAILABLE when the port cannot be bound.
  absl::StatusOr<int> Start();
  // Stops accepting; in-flight handlers finish first (RouterCore::Drain ends them).
  void Stop();

 private:
  void Register();

  RouterCore* core_;
  const ApiKeys* keys_;
  HttpServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_HTTP_SERVER_H_
