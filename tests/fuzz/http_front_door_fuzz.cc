// libFuzzer target for the router's HTTP front door (router/http): each input is what one
// client sends on one connection (then it half-closes), against a front door running in this
// process with small limits and routes like the router's (keyed JSON POST, streaming, inline
// GET). ASan and UBSan watch the parser, the head checks, the chunked body counting, the
// response channel and the connection's coroutines; the answer must be HTTP or nothing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "router/http/front_door.h"

namespace {

using expertmesh::router::http::FrontDoor;
using expertmesh::router::http::FrontDoorHooks;
using expertmesh::router::http::FrontDoorOptions;
using expertmesh::router::http::HttpRequest;
using expertmesh::router::http::ResponseWriter;
using expertmesh::router::http::Route;

void Check(bool condition, const char* what) {
  if (!condition) {
    fprintf(stderr, "http_front_door_fuzz: violated: %s\n", what);
    abort();
  }
}

int Port() {
  static const int port = [] {
    FrontDoorOptions o;
    o.limits.max_body_bytes = 4096;
    o.limits.max_header_bytes = 2048;
    o.limits.max_header_fields = 16;
    o.limits.head_timeout = absl::Milliseconds(500);
    o.limits.body_timeout = absl::Milliseconds(500);
    o.limits.idle_timeout = absl::Milliseconds(500);
    o.limits.write_timeout = absl::Milliseconds(500);
    o.limits.max_requests_per_connection = 8;
    o.handler_threads = 2;
    o.max_queued_handlers = 2;
    std::vector<Route> routes;
    routes.push_back({"POST", "/v1/completions", true, true, false,
                      [](const HttpRequest& req, ResponseWriter& res) {
                        res.Respond(200, "application/json",
                                    absl::StrCat("{\"bytes\":", req.body.size(), "}"));
                      }});
    routes.push_back({"POST", "/v1/chat/completions", true, true, false,
                      [](const HttpRequest& req, ResponseWriter& res) {
                        res.BeginStream(200, "text/event-stream");
                        for (size_t i = 0; i < req.body.size() % 5; ++i) {
                          if (!res.Write(absl::StrCat("data: ", i, "\n\n"))) break;
                        }
                        res.EndStream();
                      }});
    routes.push_back(
        {"GET", "/healthz", false, false, true,
         [](const HttpRequest&, ResponseWriter& res) { res.Respond(200, "text/plain", "ok\n"); }});
    routes.push_back(
        {"GET", "/v1/models/*", true, false, true, [](const HttpRequest& req, ResponseWriter& res) {
           res.Respond(200, "application/json", req.path);
         }});
    FrontDoorHooks hooks;
    hooks.authorize = [](std::string_view auth) {
      return auth == "Bearer k" ? absl::OkStatus() : absl::UnauthenticatedError("no key");
    };
    static FrontDoor* door = new FrontDoor(o, std::move(routes), hooks);  // lives for the run
    absl::StatusOr<int> port = door->Start();
    Check(port.ok(), "the front door did not start");
    return *port;
  }();
  return port;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int port = Port();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  // Two failures of connect are the machine's, not the front door's, and are retried for up to
  // 30 s: EADDRNOTAVAIL, out of ephemeral ports (connections of earlier inputs still in
  // TIME_WAIT); EINTR, libFuzzer's timeout alarm (SIGALRM every few seconds, without SA_RESTART)
  // arriving while the handshake waits, as it does on a loaded machine where the listen backlog
  // is full and the SYN is sent again a second later (a CI rehearsal aborted on "connect" while
  // another build shared its two cores).
  int fd = -1;
  for (int tries = 0;; ++tries) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    Check(fd >= 0, "socket");
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
    const int error = errno;
    close(fd);
    if ((error != EADDRNOTAVAIL && error != EINTR) || tries >= 300) {
      fprintf(stderr, "http_front_door_fuzz: connect failed: %s\n", strerror(error));
      Check(false, "connect");
    }
    usleep(100 * 1000);
  }
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server closed early (a refusal): fine
    sent += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string answer;
  char buf[4096];
  for (int waited = 0; waited < 3000;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, 100);
    if (ready <= 0) {
      waited += 100;
      continue;
    }
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    if (answer.size() < 65536) answer.append(buf, static_cast<size_t>(n));
  }
  // Close with a reset rather than a FIN: an orderly close leaves the connection's 4-tuple in
  // TIME_WAIT for a minute on one side or the other, and at about 1,100 inputs a second the
  // loopback's 28,000 ephemeral ports ran out within the run (connect failed after 20,195 inputs).
  const linger abort_on_close{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
  close(fd);
  Check(answer.empty() || answer.rfind("HTTP/1.1 ", 0) == 0, "an answer that is not HTTP/1.1");
  return 0;
}
