#include "router/http/connection_limiter.h"

namespace expertmesh::router::http {

std::optional<ConnectionLimiter::Lease> ConnectionLimiter::TryAcquire(const std::string& address) {
  absl::MutexLock lock(&mu_);
  if (open_ >= total_) return std::nullopt;
  int& from_address = per_address_[address];
  if (per_client_ > 0 && from_address >= per_client_) return std::nullopt;
  ++from_address;
  ++open_;
  return Lease(this, address);
}

int ConnectionLimiter::open() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

void ConnectionLimiter::Release(const std::string& address) {
  absl::MutexLock lock(&mu_);
  --open_;
  auto it = per_address_.find(address);
  if (it != per_address_.end() && --it->second <= 0) per_address_.erase(it);
}

}  // namespace expertmesh::router::http
