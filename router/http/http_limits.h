// The front door's limits: every one bounds what a client can make the router hold (memory,
// sockets, threads, time) before its request is known to be authorized and well formed.
#ifndef EXPERTMESH_ROUTER_HTTP_HTTP_LIMITS_H_
#define EXPERTMESH_ROUTER_HTTP_HTTP_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace expertmesh::router::http {

struct HttpLimits {
  // Request line plus headers, and the number of header fields (431 beyond either).
  size_t max_header_bytes = 16 * 1024;
  int max_header_fields = 100;
  // Decoded body bytes, counted as they arrive, chunked or not (413 beyond).
  size_t max_body_bytes = 4 * 1024 * 1024;
  // Body bytes being read by all connections together; a request whose body would pass it
  // gets 503 + Retry-After (bounds memory under many large uploads at once).
  size_t max_inflight_body_bytes = 256 * 1024 * 1024;

  // From a request's first byte to the end of its head: slow-header clients are dropped.
  absl::Duration head_timeout = absl::Seconds(10);
  // For the whole body once the head is in.
  absl::Duration body_timeout = absl::Seconds(60);
  // Keep-alive: how long a connection may sit between requests.
  absl::Duration idle_timeout = absl::Seconds(15);
  // TLS handshake.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // A write the client does not take within this long ends the connection (and its request).
  absl::Duration write_timeout = absl::Seconds(30);

  // Open connections in all and from one client address (0: no per-address cap; behind a
  // proxy or ingress every client shares its address). Beyond either: 503 and close.
  int max_connections = 4096;
  int max_connections_per_client = 512;
  int max_requests_per_connection = 10000;

  // Response bytes a streaming handler may queue ahead of a slow reader before Write blocks.
  size_t max_pending_response_bytes = 4 * 1024 * 1024;
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_HTTP_LIMITS_H_
