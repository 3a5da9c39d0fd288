// The router's HTTP/1.1 server (Boost.Beast on Asio, event-driven): a few I/O threads hold
// every connection, so slow or idle clients cost a socket and a few KiB, never a thread.
// Everything a client controls is bounded before it is buffered (HttpLimits): header bytes
// and fields, body bytes counted as they stream in (chunked or not), time for the head, the
// body and each write, connections in all and per address. Authorization, routing and the
// Content-Type / Content-Encoding checks are decided from the head, before a body byte is
// read. Compressed request bodies are refused (415): nothing is inflated.
//
// Handlers run on a bounded set of handler threads (they may block, e.g. on a generation);
// when all are busy and the queue is full the request gets 503 + Retry-After.
// A non-streaming request's client is watched while its handler runs: a disconnect fires
// ResponseWriter::client_gone, so work for a departed client stops.
//
// Thread safety: Start and Stop from one thread; handlers run concurrently.
#ifndef EXPERTMESH_ROUTER_HTTP_FRONT_DOOR_H_
#define EXPERTMESH_ROUTER_HTTP_FRONT_DOOR_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/http/http_exchange.h"
#include "router/http/http_limits.h"

namespace expertmesh::router::http {

struct Route {
  std::string method;  // "GET", "POST"
  // An exact path, or a prefix when it ends with '*' ("/v1/models/*").
  std::string path;
  bool needs_auth = true;
  // POST bodies must be application/json (415 otherwise).
  bool json_body = false;
  // Runs on the connection's I/O thread instead of a handler thread: only for handlers that
  // never block (probes, metrics), so they answer even when every handler thread is busy.
  bool run_inline = false;
  std::function<void(const HttpRequest&, ResponseWriter&)> handler;
};

struct FrontDoorOptions {
  std::string name = "http";  // in log lines
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
  // Both set: HTTPS only (TLS 1.2 and 1.3).
  std::string tls_cert_file;
  std::string tls_key_file;
  HttpLimits limits;
  int io_threads = 2;
  int handler_threads = 64;
  int max_queued_handlers = 256;
  int retry_after_seconds = 1;
};

struct FrontDoorHooks {
  // Decides on the Authorization header's value; OK lets the request in.
  std::function<absl::Status(std::string_view authorization)> authorize;
  // The body of an error the front door answers itself (JSON).
  std::function<std::string(int http_status, std::string_view code, std::string_view message)>
      render_error;
  // Counts a request the front door answered itself: the route's path ("unmatched" when none
  // matched) and the HTTP status.
  std::function<void(std::string_view route, int status)> count;
};

class FrontDoor {
 public:
  FrontDoor(FrontDoorOptions options, std::vector<Route> routes, FrontDoorHooks hooks);
  ~FrontDoor();

  // Binds and starts serving. Returns the bound port. INVALID_ARGUMENT for unreadable or
  // invalid TLS files or a bad host, UNAVAILABLE when the port cannot be bound.
  absl::StatusOr<int> Start();
  // Stops accepting, ends open responses (their handlers see client_gone) and waits for the
  // handlers to return. Idempotent.
  void Stop();

  int open_connections() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_FRONT_DOOR_H_
