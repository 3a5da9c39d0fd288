// Cancellation shared between an API layer (client gone, deadline, shutdown) and the code
// waiting on a worker. Callbacks run on the cancelling thread, under the token's lock: keep
// them short and non-blocking (grpc::ClientContext::TryCancel, waking a condition).
#ifndef EXPERTMESH_ROUTER_CANCEL_TOKEN_H_
#define EXPERTMESH_ROUTER_CANCEL_TOKEN_H_

#include <atomic>
#include <functional>
#include <map>

#include "absl/synchronization/mutex.h"

namespace expertmesh::router {

class CancelToken {
 public:
  // Idempotent.
  void Cancel() {
    absl::MutexLock lock(&mu_);
    if (cancelled_.exchange(true)) return;
    for (auto& [id, fn] : callbacks_) fn();
  }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Runs `fn` on Cancel, or at once when already cancelled. Returns a handle for Unregister.
  int Register(std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    if (cancelled_) fn();
    callbacks_.emplace(next_id_, std::move(fn));
    return next_id_++;
  }
  // After Unregister returns the callback is not running and will not run.
  void Unregister(int handle) {
    absl::MutexLock lock(&mu_);
    callbacks_.erase(handle);
  }

 private:
  absl::Mutex mu_;
  std::atomic<bool> cancelled_{false};
  std::map<int, std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

// Registers on construction, unregisters on destruction.
class CancelRegistration {
 public:
  CancelRegistration(CancelToken* token, std::function<void()> fn)
      : token_(token), handle_(token ? token->Register(std::move(fn)) : -1) {}
  ~CancelRegistration() {
    if (token_) token_->Unregister(handle_);
  }
  CancelRegistration(const CancelRegistration&) = delete;
  CancelRegistration& operator=(const CancelRegistration&) = delete;

 private:
  CancelToken* token_;
  int handle_;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_CANCEL_TOKEN_H_
