// Backpressure: at most `max_active` generations run at once and at most `max_queued` wait for
// a slot; beyond that requests are refused at once with RESOURCE_EXHAUSTED (HTTP 429 with
// Retry-After), so overload never becomes unbounded memory or latency.
//
// Thread safety: all methods may be called from any thread.
#ifndef EXPERTMESH_ROUTER_ADMISSION_H_
#define EXPERTMESH_ROUTER_ADMISSION_H_

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/cancel_token.h"

namespace expertmesh::router {

class Admission {
 public:
  Admission(int max_active, int max_queued) : max_active_(max_active), max_queued_(max_queued) {}

  // A held slot; releases it when destroyed.
  class Ticket {
   public:
    Ticket() = default;
    explicit Ticket(Admission* owner) : owner_(owner) {}
    Ticket(Ticket&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    Ticket& operator=(Ticket&& other) noexcept {
      if (this != &other) {
        Release();
        owner_ = std::exchange(other.owner_, nullptr);
      }
      return *this;
    }
    ~Ticket() { Release(); }

   private:
    void Release() {
      if (owner_) owner_->Release();
      owner_ = nullptr;
    }
    Admission* owner_ = nullptr;
  };

  // Takes `slots` slots (one per choice of the request), waiting in the queue until `deadline`
  // if all are taken. RESOURCE_EXHAUSTED when the queue is full (or slots > max_active),
  // DEADLINE_EXCEEDED, CANCELLED when `cancel` fires while waiting.
  absl::StatusOr<std::vector<Ticket>> Acquire(int slots, absl::Time deadline, CancelToken* cancel);

  int active() const;
  // Waits until no slot is held (or `timeout` passes); returns whether it got there.
  bool WaitIdle(absl::Duration timeout) const;
  int queued() const;
  int max_active() const { return max_active_; }

 private:
  void Release();

  const int max_active_;
  const int max_queued_;
  mutable absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  int queued_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_ADMISSION_H_
