#include "tests/router/http/raw_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace expertmesh::router::testing {

RawClient::RawClient(int port, const std::string& source) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
      connect(fd_, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0) {
    Close();
  }
}

RawClient::~RawClient() { Close(); }

void RawClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool RawClient::Send(std::string_view data) {
  while (!data.empty() && fd_ >= 0) {
    const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return fd_ >= 0;
}

// Reads until `done(received)` holds, the peer closes (true) or `timeout` passes (false).
bool RawClient::ReadUntil(absl::Duration timeout, std::string* out,
                          const std::function<bool(const std::string&)>& done) {
  const absl::Time deadline = absl::Now() + timeout;
  char buf[16384];
  while (fd_ >= 0 && !done(*out)) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) continue;
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return true;
    out->append(buf, static_cast<size_t>(n));
  }
  return true;
}

std::string RawClient::ReadAll(absl::Duration timeout) {
  std::string out;
  ReadUntil(timeout, &out, [](const std::string&) { return false; });
  return out;
}

std::string RawClient::ReadResponse(absl::Duration timeout) {
  std::string out;
  ReadUntil(timeout, &out, [](const std::string& received) {
    const size_t head_end = received.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    size_t length = 0;
    for (absl::string_view line : absl::StrSplit(received.substr(0, head_end), "\r\n")) {
      if (absl::StartsWithIgnoreCase(line, "content-length:")) {
        (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &length);
      }
    }
    return received.size() >= head_end + 4 + length;
  });
  return out;
}

bool RawClient::PeerClosed(absl::Duration timeout) {
  std::string ignored;
  // Anything the server still sends is read and dropped; only the end of stream counts.
  return ReadUntil(timeout, &ignored, [&ignored](const std::string&) {
    ignored.clear();
    return false;
  });
}

int StatusOf(std::string_view response) {
  if (!absl::StartsWith(absl::string_view(response.data(), response.size()), "HTTP/1.")) return 0;
  int status = 0;
  if (response.size() < 12 ||
      !absl::SimpleAtoi(absl::string_view(response.data() + 9, 3), &status)) {
    return 0;
  }
  return status;
}

namespace {
size_t StatusField(const char* name) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, name)) {
      size_t kb = 0;
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kb)) return kb * 1024;
    }
  }
  return 0;
}
}  // namespace

size_t ResidentBytes() { return StatusField("VmRSS:"); }
size_t PeakResidentBytes() { return StatusField("VmHWM:"); }

}  // namespace expertmesh::router::testing
