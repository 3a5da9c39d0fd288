// One connection of the front door, as an Asio coroutine on the connection's strand
// (internal to router/http).
#ifndef EXPERTMESH_ROUTER_HTTP_HTTP_SESSION_H_
#define EXPERTMESH_ROUTER_HTTP_HTTP_SESSION_H_

#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "router/http/connection_limiter.h"
#include "router/http/front_door_state.h"

namespace expertmesh::router::http {

// Serves requests on `socket` until the client closes, a limit ends the connection, or the
// server stops. `ssl` null: plain HTTP.
boost::asio::awaitable<void> ServeConnection(FrontDoorState& state,
                                             boost::asio::ip::tcp::socket socket,
                                             boost::asio::ssl::context* ssl,
                                             ConnectionLimiter::Lease lease, std::string client);

// Answers 503 + Retry-After (plain HTTP) or just closes (TLS) a connection over the caps.
boost::asio::awaitable<void> RefuseConnection(FrontDoorState& state,
                                              boost::asio::ip::tcp::socket socket, bool tls);

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_HTTP_SESSION_H_
