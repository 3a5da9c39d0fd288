// The local addresses a TCP port listens on, read from /proc/net/tcp and /proc/net/tcp6
// ("127.0.0.1", "0.0.0.0", "::", "::1", ...; a v4-mapped "::ffff:127.0.0.1" reads as
// "127.0.0.1", and gRPC's wildcard shows as "::"): lets a test say which interfaces a server bound,
// and whether it still listens at all. Linux only; header-only for tests.
#ifndef EXPERTMESH_TESTS_UTIL_LISTENING_SOCKETS_H_
#define EXPERTMESH_TESTS_UTIL_LISTENING_SOCKETS_H_

#include <arpa/inet.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace expertmesh::testing {

// Sorted, without duplicates; empty when nothing listens on `port`.
inline std::set<std::string> ListeningAddresses(int port) {
  std::set<std::string> out;
  for (const bool v6 : {false, true}) {
    std::ifstream in(v6 ? "/proc/net/tcp6" : "/proc/net/tcp");
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      if (state != "0A") continue;  // TCP_LISTEN
      const size_t colon = local.find(':');
      if (colon == std::string::npos) continue;
      if (std::strtol(local.substr(colon + 1).c_str(), nullptr, 16) != port) continue;
      // The address is the kernel's in-memory words, each 32-bit word printed in host order.
      const std::string hex = local.substr(0, colon);
      uint32_t words[4] = {};
      const size_t n = hex.size() / 8;
      for (size_t i = 0; i < n && i < 4; ++i) {
        words[i] = static_cast<uint32_t>(std::strtoul(hex.substr(i * 8, 8).c_str(), nullptr, 16));
      }
      char text[INET6_ADDRSTRLEN] = {};
      inet_ntop(v6 ? AF_INET6 : AF_INET, words, text, sizeof(text));
      // gRPC binds an IPv4 address as a v4-mapped IPv6 socket: the same interface.
      std::string address = text;
      if (address.rfind("::ffff:", 0) == 0 && address.find('.') != std::string::npos) {
        address = address.substr(7);
      }
      out.insert(address);
    }
  }
  return out;
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_UTIL_LISTENING_SOCKETS_H_
