// A bare TCP client for tests that must send what no well-behaved HTTP library would: slow
// heads, oversized or endless bodies, compressed bodies, a chosen loopback source address.
#ifndef EXPERTMESH_TESTS_ROUTER_HTTP_RAW_CLIENT_H_
#define EXPERTMESH_TESTS_ROUTER_HTTP_RAW_CLIENT_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace expertmesh::router::testing {

class RawClient {
 public:
  // Connects to 127.0.0.1:`port` from `source` (any 127.x.y.z address works on loopback).
  RawClient(int port, const std::string& source = "127.0.0.1");
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Sends all of `data`; false once the peer closed or reset.
  bool Send(std::string_view data);
  // Reads until the peer closes or `timeout` passes; returns what arrived.
  std::string ReadAll(absl::Duration timeout);
  // Reads until `data` holds a whole response head plus Content-Length body bytes (or the
  // peer closes, or `timeout` passes).
  std::string ReadResponse(absl::Duration timeout);
  // Whether the peer has closed: waits up to `timeout` for an end of stream.
  bool PeerClosed(absl::Duration timeout);
  void Close();

 private:
  bool ReadUntil(absl::Duration timeout, std::string* out,
                 const std::function<bool(const std::string&)>& done);

  int fd_ = -1;
};

// The status code of a raw response ("HTTP/1.1 413 ..."), 0 when none.
int StatusOf(std::string_view response);

// The resident set of this process (bytes), and its peak (VmHWM).
size_t ResidentBytes();
size_t PeakResidentBytes();

}  // namespace expertmesh::router::testing

#endif  // EXPERTMESH_TESTS_ROUTER_HTTP_RAW_CLIENT_H_
