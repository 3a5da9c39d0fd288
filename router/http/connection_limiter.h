// Caps open connections in total and per client address. A slot is held by a Lease for the
// connection's life.
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_HTTP_CONNECTION_LIMITER_H_
#define EXPERTMESH_ROUTER_HTTP_CONNECTION_LIMITER_H_

#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace expertmesh::router::http {

class ConnectionLimiter {
 public:
  // `per_client` 0: no per-address cap.
  ConnectionLimiter(int total, int per_client) : total_(total), per_client_(per_client) {}

  class Lease {
   public:
    Lease(ConnectionLimiter* owner, std::string address)
        : owner_(owner), address_(std::move(address)) {}
    Lease(Lease&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), address_(std::move(other.address_)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (owner_) owner_->Release(address_);
    }

   private:
    ConnectionLimiter* owner_;
    std::string address_;
  };

  // A lease, or nothing when either cap is reached.
  std::optional<Lease> TryAcquire(const std::string& address);
  int open() const;

 private:
  void Release(const std::string& address);

  const int total_;
  const int per_client_;
  mutable absl::Mutex mu_;
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> per_address_ ABSL_GUARDED_BY(mu_);
};

// Bytes reserved by requests whose bodies are being read, against one shared budget.
//
// Thread safety: all methods may be called from any thread.
class ByteBudget {
 public:
  explicit ByteBudget(size_t limit) : limit_(limit) {}
  // Reserves `bytes`; false (nothing reserved) when that would pass the limit.
  bool TryReserve(size_t bytes) {
    absl::MutexLock lock(&mu_);
    if (bytes > limit_ - used_) return false;
    used_ += bytes;
    return true;
  }
  void Release(size_t bytes) {
    absl::MutexLock lock(&mu_);
    used_ -= bytes;
  }

 private:
  const size_t limit_;
  absl::Mutex mu_;
  size_t used_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace expertmesh::router::http

#endif  // EXPERTMESH_ROUTER_HTTP_CONNECTION_LIMITER_H_
