#include "router/request_ids.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "common/logging.h"
#include "model/request/request_id.h"

namespace expertmesh::router {
namespace {

// 16 bytes from getrandom(2). It blocks only before the kernel's pool is first seeded (early
// boot) and cannot fail otherwise except by a signal, which we retry.
std::string RandomHex128() {
  unsigned char bytes[16];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // No randomness means ids could repeat across clients: refuse to go on.
      EM_LOG_ERROR("router: getrandom failed (errno {}); cannot make request ids", errno);
      std::abort();
    }
    filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

}  // namespace

std::string NewInternalRequestId() { return std::string(model::kRequestIdPrefix) + RandomHex128(); }

std::string NewPublicRequestId() { return RandomHex128(); }

}  // namespace expertmesh::router
